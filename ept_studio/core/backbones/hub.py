"""A backbone from one file of a Hugging Face hub repository: fetch it, check it, convert it.

:func:`fetch_hub_file` is the only part that uses the network. :func:`install_backbone_file` is
offline: it refuses a pickle file and a file whose sha256 differs from the manifest's pin, reads
the tensors with safetensors, converts and checks them (:mod:`converters`), writes the timm
weights atomically, and records beside them where they came from and whether that was pinned
(``NAME.safetensors.source.json``, see formats.md).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import save_file

from ept_studio.common.errors import BackboneError, BackboneNotAvailableError, ChecksumMismatchError
from ept_studio.common.files import file_sha256
from ept_studio.core.backbones.converters import StateDict, convert_checkpoint
from ept_studio.core.backbones.loader import SHA256_SUFFIX, publish_file, read_weights
from ept_studio.core.backbones.manifest import BackboneSpec, HubSource

SOURCE_SUFFIX = ".source.json"
SOURCE_RECORD_FORMAT = "ept-studio-backbone-source"
SOURCE_RECORD_VERSION = 1


@dataclass(frozen=True)
class FetchedFile:
    """A file as it came from the hub (or from the user's disk: ``commit`` None)."""

    path: Path
    commit: str | None
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class InstalledBackbone:
    """Converted weights in place, and what was and was not pinned about their source."""

    weights: Path
    weights_sha256: str
    source_sha256: str
    commit: str | None
    revision_pinned: bool
    sha256_pinned: bool


def hub_source(spec: BackboneSpec) -> HubSource:
    """``spec``'s hub source; any other kind raises :class:`BackboneError`."""
    if not isinstance(spec.source, HubSource):
        raise BackboneError(f"The backbone {spec.name!r} does not come from the Hugging Face hub.")
    return spec.source


def refuse_pickle(spec: BackboneSpec) -> None:
    """A publisher's pickle file is never downloaded nor opened: say what to do instead."""
    source = hub_source(spec)
    if source.file_format == "pickle":
        raise BackboneNotAvailableError(
            f"The publisher ships {spec.name!r} only as a Python pickle file ({source.file} in "
            f"{source.hub_id}); EPT Studio never opens pickle files, because opening one can run "
            f"any code. Convert it to safetensors with tools you trust, then run `ept-studio "
            f"models get {spec.name} --from-file FILE.safetensors`."
        )


def fetch_hub_file(spec: BackboneSpec, folder: Path) -> FetchedFile:
    """Download ``spec``'s file at its pinned revision (else the newest) into ``folder``."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    source = hub_source(spec)
    refuse_pickle(spec)
    revision = source.revision or "main"
    try:
        url = hf_hub_url(source.hub_id, source.file, revision=revision)
        commit = get_hf_file_metadata(url).commit_hash or revision
        path = Path(hf_hub_download(source.hub_id, source.file, revision=commit, local_dir=folder))
    except Exception as err:  # hub, network and file errors come in many classes
        raise BackboneNotAvailableError(
            f"Could not download {source.file} of the backbone {spec.name!r} from the Hugging "
            f"Face hub ({source.hub_id} at {revision}): {err}. Check the internet connection and "
            f"try again."
        ) from err
    return FetchedFile(path, commit, file_sha256(path), path.stat().st_size)


def local_file(path: Path) -> FetchedFile:
    """A file the user downloaded (or converted) themselves, to install like a fetched one."""
    if not path.is_file():
        raise BackboneNotAvailableError(f"The weights file {path} does not exist.")
    return FetchedFile(path, None, file_sha256(path), path.stat().st_size)


def install_backbone_file(
    spec: BackboneSpec, fetched: FetchedFile, folder: Path
) -> InstalledBackbone:
    """Check, convert and write ``fetched`` as ``folder / spec.weights_file`` with its records."""
    source = hub_source(spec)
    pin = source.file_sha256 if source.file_format == "safetensors" else None
    if pin is not None and fetched.sha256 != pin:
        raise ChecksumMismatchError(
            f"The file {fetched.path} is not the one the backbone list pins for {spec.name!r}: "
            f"its sha256 is {fetched.sha256}, expected {pin}. Delete it and fetch it again."
        )
    state = convert_checkpoint(
        source.converter, read_weights(fetched.path), spec.timm_name, origin=str(fetched.path)
    )
    weights = folder / spec.weights_file
    weights_sha = write_weights(state, weights, converter=source.converter)
    installed = InstalledBackbone(
        weights=weights,
        weights_sha256=weights_sha,
        source_sha256=fetched.sha256,
        commit=fetched.commit,
        revision_pinned=source.revision is not None and fetched.commit == source.revision,
        sha256_pinned=pin is not None,
    )
    write_source_record(spec, installed)
    return installed


def write_weights(state: StateDict, path: Path, *, converter: str) -> str:
    """Save converted tensors as safetensors (atomically); record the file's sha256 beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"ept_studio": json.dumps({"converter": converter}, sort_keys=True)}
    partial = path.with_name(path.name + ".partial")
    save_file(dict(sorted(state.items())), partial, metadata=metadata)
    publish_file(partial, path)
    sha = file_sha256(path)
    path.with_name(path.name + SHA256_SUFFIX).write_text(sha + "\n", encoding="ascii")
    return sha


def write_source_record(spec: BackboneSpec, installed: InstalledBackbone) -> Path:
    """``NAME.safetensors.source.json``: the hub file, commit and sha256 the weights came from."""
    source = hub_source(spec)
    record = {
        "format": SOURCE_RECORD_FORMAT,
        "version": SOURCE_RECORD_VERSION,
        "backbone": spec.name,
        "hub_id": source.hub_id,
        "file": source.file,
        "commit": installed.commit,
        "revision_pinned": installed.revision_pinned,
        "file_sha256": installed.source_sha256,
        "file_sha256_pinned": installed.sha256_pinned,
        "from_local_file": installed.commit is None,
        "converter": source.converter,
        "licence": spec.licence,
        "weights_sha256": installed.weights_sha256,
    }
    path = source_record_path(installed.weights)
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def source_record_path(weights: Path) -> Path:
    return weights.with_name(weights.name + SOURCE_SUFFIX)


def get_hub_backbone(
    spec: BackboneSpec, folder: Path, file: Path | None = None
) -> InstalledBackbone:
    """Fetch (or take ``file``) and install a hub backbone into ``folder``."""
    if file is not None:
        return install_backbone_file(spec, local_file(file), folder)
    refuse_pickle(spec)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as scratch:
        return install_backbone_file(spec, fetch_hub_file(spec, Path(scratch)), folder)
