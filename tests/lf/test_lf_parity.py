"""Our lf data path against LLaMA-Factory's get_dataset (tests/lf/lf_parity.py), where llamafactory is importable.

CI does not install LLaMA-Factory: there the module is skipped. docs/lf_data.md gives the setup and the
full run's result; this runs every template on a few records of the datasets and settings that cover
multi-turn chats, tools, reasoning with tools, mask_history and both packings.
"""
import os

import pytest

from tests.lf import lf_parity

pytestmark = [pytest.mark.slow]

if not lf_parity.llamafactory_available():
    pytest.skip("llamafactory (with its demo data) is not importable here", allow_module_level=True)

DATASETS = ["identity", "sharegpt_multi", "glaive_system", "reason_sharegpt", "reason_openai_nosys"]
SETTINGS = ["base", "mask_history", "think_false", "packing", "neat_packing"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import datasets
    datasets.disable_progress_bars()
    work = str(tmp_path_factory.mktemp("lf_parity"))
    dataset_dir = lf_parity.write_dataset_dir(lf_parity.lf_data_dir(), os.path.join(work, "data"))
    return work, dataset_dir, lf_parity.make_tokenizers(work)


@pytest.mark.parametrize("template", lf_parity.TEMPLATES)
def test_identical_outside_deliberate_differences(setup, template):
    work, dataset_dir, toks = setup
    failed = []
    for case in lf_parity.all_cases([template], DATASETS, SETTINGS, max_samples=24):
        res = lf_parity.run_case(case, toks, dataset_dir, work)
        if not res.ok:
            failed.append(res.line() + " " + res.first_diff)
    assert not failed, "\n".join(failed)


def test_the_harness_sees_a_difference(setup):
    """The comparison can fail: LLaMA-Factory's openai system rewrite shows up, explained."""
    work, dataset_dir, toks = setup
    res = lf_parity.run_case(lf_parity.Case("qwen3", "openai_chat", "base", 6), toks, dataset_dir, work)
    assert res.identical < res.total and res.deliberate == {"openai-system-rewrite": res.total - res.identical}
