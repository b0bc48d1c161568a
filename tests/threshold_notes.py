"""What a gradebook row must say about a judged threshold (autograder/kit/scoring.py, translation_grading.py): the
measured value, how many examples were scored (all of them, or a sample of how many), the interval or "exact",
and the device and seconds it took. The tests of each assignment's threshold path check their notes with this."""
import re

DECIDED = re.compile(r"(accuracy|perplexity|BLEU) .*\d+\.\d+.* on (all [\d,]+|[\d,]+ of [\d,]+) .*"
                     r"\((exact|[\d.]+% interval \d+\.\d+%–\d+\.\d+%)[);].*"
                     r"scored on (cpu|cuda) \(\d+ threads?\) in \d+\.\d s")


def assert_decided(note: str) -> None:
    """The note names the value, the examples scored, the interval (or exact), the device and the seconds."""
    assert DECIDED.search(note), f"the threshold note does not say how it was decided: {note!r}"
