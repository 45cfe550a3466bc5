"""Names of the evaluation's methods and metrics, without importing torch (the CLI's ``--help``
and its path checks answer before any heavy import). :mod:`.methods` and :mod:`.runner` hold
what each name computes; a test keeps both in step."""

from clrp_widgets import methods

RELEVANCE_METHODS = methods.CONTRASTS
BASELINE_METHODS = methods.BASELINES
METHODS = RELEVANCE_METHODS + BASELINE_METHODS
DEFAULT_METHODS = ("lrp", "clrp1", "clrp2", "sglrp", "gradient", "guided_backprop", "gradcam")

METRICS = (
    "pointing_game",
    "strict_pointing_game",
    "ablation",
    "region_perturbation",
    "region_perturbation_lerf",
    "class_sensitivity",
    "class_sensitivity_ssim",
)
DEFAULT_METRICS = ("pointing_game", "strict_pointing_game", "ablation", "class_sensitivity")
