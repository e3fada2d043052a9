"""EPT Studio: few-shot medical image classification with Embedded Prompt Tuning.

For research use only. Not a medical device; not for diagnosis or treatment decisions.
"""

__version__ = "0.1.0"

RESEARCH_USE_NOTICE = (
    "For research use only. Not for clinical diagnosis. EPT Studio is not a medical device and has "
    "not been cleared or approved for clinical use; its model scores must not be used for diagnosis "
    "or treatment."
)

__all__ = ["RESEARCH_USE_NOTICE", "__version__"]
