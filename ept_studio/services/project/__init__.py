"""What a caller holding a project can do: create, import, label, split, train, predict, review, export.

The desktop app and the command line import from here; the modules beside this file are the
service's parts. Qt-free; torch is imported only when a task needs it.
"""

from __future__ import annotations

from ept_studio.common.calibration import (
    ReliabilityBin,
)
from ept_studio.data.overlay import (
    CAPTION,
)
from ept_studio.data.project_key import (
    missing_key_message,
)
from ept_studio.data.store import (
    ClassCount,
    ImageFilter,
    ImageStatus,
    LabelMode,
    Project,
    Role,
)
from ept_studio.data.store_records import (
    ClassInfo,
)
from ept_studio.services.model.export import (
    OnnxExportResult,
)
from ept_studio.services.project.demo import (
    DemoInfo,
    create_demo_project,
    default_demo_folder,
    demo_info,
)
from ept_studio.services.project.gallery import (
    REVIEW_VIEWS,
    GalleryFilter,
    GalleryItem,
    GalleryView,
    class_counts,
    gallery_items,
    image_count,
    series_gallery_items,
    unlabelled_count,
)
from ept_studio.services.project.gallery_review import (
    latest_prediction_run,
)
from ept_studio.services.project.importing import (
    ImportFinished,
    ImportProgress,
    ImportReport,
    import_paths,
    iter_import,
    missing_or_changed,
    pacs_cache_dir,
)
from ept_studio.services.project.inference import (
    ProjectPredicted,
    predict_project,
)
from ept_studio.services.project.lifecycle import (
    create_project,
    default_projects_parent,
    export_project_key,
    export_prompt_file,
    import_project_key,
    is_project_folder,
    new_project_folder,
    open_project,
)
from ept_studio.services.project.pacs import (
    PacsError,
    PacsImportEvent,
    PacsRetrieved,
    PacsSeries,
    PacsServer,
    PacsStudy,
    iter_pacs_import,
    pacs_import,
    search_studies,
)
from ept_studio.services.project.pacs_credentials import CredentialStore
from ept_studio.services.project.pacs_dimse import (
    DimseServer,
    iter_dimse_import,
    search_dimse_studies,
)
from ept_studio.services.project.pacs_servers import (
    PacsEntry,
    iter_import_from_pacs,
    load_pacs_entries,
    save_pacs_entries,
    search_pacs,
    search_pacs_series,
    servers_file,
)
from ept_studio.services.project.pacs_store import store_to_pacs
from ept_studio.services.project.preview import (
    ImagePreview,
    iter_preview,
)
from ept_studio.services.project.project_meta import (
    is_demo_project,
    remember_backbone,
    remembered_backbone,
)
from ept_studio.services.project.readiness import (
    SPLIT_ACTION,
    ReadinessItem,
    Severity,
    check_readiness,
)
from ept_studio.services.project.removal import (
    pacs_copies_among,
    remove_from_project,
)
from ept_studio.services.project.reports import (
    export_predictions_csv,
    export_series_csv,
    readme_path,
    write_model_card,
)
from ept_studio.services.project.results import (
    TRAINING_VIEW_NAME,
    ImageSelection,
    ResultsScope,
    RunResults,
    confusion_selection,
    reliability_selection,
    run_results,
    scope_summary,
)
from ept_studio.services.project.results_stats import (
    CalibrationCheck,
    Interval,
    SetResults,
)
from ept_studio.services.project.run_actions import (
    ExportCancelled,
    ResultsChoice,
    SmallerModelRefused,
    TrainedRun,
    export_run_onnx,
    predict_with_run,
    result_runs,
    trained_runs,
)
from ept_studio.services.project.series import (
    Series,
    SeriesSummary,
    label_series,
    project_series,
    series_slices,
    series_summary,
    set_series_role,
)
from ept_studio.services.project.series_predictions import (
    AGGREGATION_HELP,
    AGGREGATIONS,
    SeriesPrediction,
    series_predictions,
)
from ept_studio.services.project.series_report import (
    ModelDescription,
    SeriesReportError,
    SeriesReportsWritten,
    describe_model,
    report_file_name,
    reportable_series,
    write_series_report,
    write_series_reports,
)
from ept_studio.services.project.test_split import (
    apply_test_split,
    suggest_test_split,
)
from ept_studio.services.project.training import (
    ProjectDataReady,
    ProjectTrainingSaved,
    held_out_sizes,
    train_on_project,
)
from ept_studio.services.project.training_plan import (
    TrainingPlan,
    plan_training,
    rough_duration,
)
from ept_studio.services.project.tuning import (
    TuningCancelled,
    tune_project,
)
from ept_studio.services.project.viewer import (
    AttentionLayer,
    ColourStop,
    ImageView,
    MetadataRow,
    WindowLevel,
    attention_colour_stops,
    attention_layer,
    metadata_rows,
    open_view,
    open_view_file,
    overlay_caption,
    overlay_pixels,
    prediction_runs,
    render_view,
)
from ept_studio.services.project.viewer_caption import (
    ImageCaption,
    image_caption,
    view_summary,
)
from ept_studio.services.project.viewer_preview import (
    blend_heatmap,
    newest_model_run,
    preview_caption,
    preview_heatmap,
)

__all__ = [
    "AGGREGATIONS",
    "AGGREGATION_HELP",
    "CAPTION",
    "REVIEW_VIEWS",
    "SPLIT_ACTION",
    "TRAINING_VIEW_NAME",
    "AttentionLayer",
    "CalibrationCheck",
    "ClassCount",
    "ClassInfo",
    "ColourStop",
    "CredentialStore",
    "DemoInfo",
    "DimseServer",
    "ExportCancelled",
    "GalleryFilter",
    "GalleryItem",
    "GalleryView",
    "ImageCaption",
    "ImageFilter",
    "ImagePreview",
    "ImageSelection",
    "ImageStatus",
    "ImageView",
    "ImportFinished",
    "ImportProgress",
    "ImportReport",
    "Interval",
    "LabelMode",
    "MetadataRow",
    "ModelDescription",
    "OnnxExportResult",
    "PacsEntry",
    "PacsError",
    "PacsImportEvent",
    "PacsRetrieved",
    "PacsSeries",
    "PacsServer",
    "PacsStudy",
    "Project",
    "ProjectDataReady",
    "ProjectPredicted",
    "ProjectTrainingSaved",
    "ReadinessItem",
    "ReliabilityBin",
    "ResultsChoice",
    "ResultsScope",
    "Role",
    "RunResults",
    "Series",
    "SeriesPrediction",
    "SeriesReportError",
    "SeriesReportsWritten",
    "SeriesSummary",
    "SetResults",
    "Severity",
    "SmallerModelRefused",
    "TrainedRun",
    "TrainingPlan",
    "TuningCancelled",
    "WindowLevel",
    "apply_test_split",
    "attention_colour_stops",
    "attention_layer",
    "blend_heatmap",
    "check_readiness",
    "class_counts",
    "confusion_selection",
    "create_demo_project",
    "create_project",
    "default_demo_folder",
    "default_projects_parent",
    "demo_info",
    "describe_model",
    "export_predictions_csv",
    "export_project_key",
    "export_prompt_file",
    "export_run_onnx",
    "export_series_csv",
    "gallery_items",
    "held_out_sizes",
    "image_caption",
    "image_count",
    "import_paths",
    "import_project_key",
    "is_demo_project",
    "is_project_folder",
    "iter_dimse_import",
    "iter_import",
    "iter_import_from_pacs",
    "iter_pacs_import",
    "iter_preview",
    "label_series",
    "latest_prediction_run",
    "load_pacs_entries",
    "metadata_rows",
    "missing_key_message",
    "missing_or_changed",
    "new_project_folder",
    "newest_model_run",
    "open_project",
    "open_view",
    "open_view_file",
    "overlay_caption",
    "overlay_pixels",
    "pacs_cache_dir",
    "pacs_copies_among",
    "pacs_import",
    "plan_training",
    "predict_project",
    "predict_with_run",
    "prediction_runs",
    "preview_caption",
    "preview_heatmap",
    "project_series",
    "readme_path",
    "reliability_selection",
    "remember_backbone",
    "remembered_backbone",
    "remove_from_project",
    "render_view",
    "report_file_name",
    "reportable_series",
    "result_runs",
    "rough_duration",
    "run_results",
    "save_pacs_entries",
    "scope_summary",
    "search_dimse_studies",
    "search_pacs",
    "search_pacs_series",
    "search_studies",
    "series_gallery_items",
    "series_predictions",
    "series_slices",
    "series_summary",
    "servers_file",
    "set_series_role",
    "store_to_pacs",
    "suggest_test_split",
    "train_on_project",
    "trained_runs",
    "tune_project",
    "unlabelled_count",
    "view_summary",
    "write_model_card",
    "write_series_report",
    "write_series_reports",
]
