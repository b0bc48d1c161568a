"""The course's torch CPU thread setting (dlcourse.threads): the DLCOURSE_THREADS override, its error message, the
defaults, and that torch_threads restores the count it found."""
import pytest
import torch

from dlcourse.threads import THREADS_ENV, available_cores, course_threads, torch_threads


@pytest.fixture
def threads_before():
    """torch's count before the test, put back afterwards whatever the test did."""
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_defaults_are_one_thread_for_small_models_and_every_core_for_bert(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert course_threads() == 1
    assert course_threads(large_model=True) == available_cores()


def test_the_environment_variable_overrides_both_defaults(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, " 3 ")
    assert course_threads() == 3
    assert course_threads(large_model=True) == 3


@pytest.mark.parametrize("value", ["two", "0", "-1", "1.5"])
def test_an_invalid_value_is_an_error_that_names_the_variable(monkeypatch, value):
    monkeypatch.setenv(THREADS_ENV, value)
    with pytest.raises(ValueError, match=THREADS_ENV) as error:
        course_threads()
    assert repr(value) in str(error.value)  # the message shows what was set


def test_the_context_manager_sets_the_count_and_restores_the_previous_one(monkeypatch, threads_before):
    monkeypatch.setenv(THREADS_ENV, "2")
    torch.set_num_threads(3)
    with torch_threads("cpu") as chosen:
        assert chosen == 2 and torch.get_num_threads() == 2
    assert torch.get_num_threads() == 3


def test_the_previous_count_comes_back_after_an_exception(monkeypatch, threads_before):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    torch.set_num_threads(2)
    with pytest.raises(RuntimeError), torch_threads("cpu"):
        assert torch.get_num_threads() == 1
        raise RuntimeError("training failed")
    assert torch.get_num_threads() == 2


def test_the_outermost_block_wins(monkeypatch, threads_before):
    """A benchmark's or the reference builder's choice holds through the course helpers it calls."""
    monkeypatch.delenv(THREADS_ENV, raising=False)
    torch.set_num_threads(1)
    with torch_threads("cpu", threads=2):
        with torch_threads("cpu") as inner:  # what train_seq2seq and the others open
            assert inner == 2 and torch.get_num_threads() == 2
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == 1


def test_other_devices_are_left_alone(monkeypatch, threads_before):
    """On a GPU torch's own host thread count stays; nothing is read from DLCOURSE_THREADS either."""
    monkeypatch.setenv(THREADS_ENV, "not a number")
    torch.set_num_threads(2)
    with torch_threads("cuda") as chosen:
        assert chosen == 2 and torch.get_num_threads() == 2
    assert torch.get_num_threads() == 2
