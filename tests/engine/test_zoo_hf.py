"""Every Hugging Face image classifier family of transformers 4.53 that builds from a config
(issue 20), from small configs with random weights: the model's ``ImageClassifierOutput`` is
read for its ``.logits`` with no wrapper.

CNN families are exact under the paper preset; families with attention are exact under it up
to the share that constant tokens keep, and explained under ``rules="attnlrp"``.
"""

from __future__ import annotations

import pytest
import transformers
from zoo_external import HF_ATTENTION, HF_EXCLUDED, HF_FAMILIES, Report, build_hf, measure
from zoo_matrix import check_attnlrp, check_conservative, check_refusals

REFUSED: dict[str, str] = {}


@pytest.fixture(scope="module", params=list(HF_FAMILIES))
def case(request: pytest.FixtureRequest):
    return build_hf(request.param)


@pytest.fixture(scope="module")
def paper(case) -> Report:
    return measure(case, "paper")


def test_paper_preset_is_exact(paper: Report) -> None:
    check_conservative(paper, {})


@pytest.mark.parametrize("family", sorted(HF_ATTENTION))
def test_attention_families_are_explained_under_attnlrp(family: str) -> None:
    check_attnlrp(measure(build_hf(family), "attnlrp"))


def test_refusals_stay_under_five_percent() -> None:
    check_refusals(REFUSED, len(HF_FAMILIES))


def test_the_matrix_covers_every_image_classifier_family() -> None:
    """Each family of transformers' image-classification auto mapping is in the matrix or
    excluded with a reason: a new family fails this test until it is added."""
    mapping = transformers.models.auto.modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES
    names = {k.replace("_", "-") for k in mapping}
    covered = {n.replace("_", "-") for n in (*HF_FAMILIES, *HF_EXCLUDED)}
    covered |= {n.split("-with-")[0] for n in covered}
    assert names - covered == set()
