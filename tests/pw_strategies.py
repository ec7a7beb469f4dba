"""Hypothesis strategies for PlantWire's contract: valid names, values, samples and batches."""

from __future__ import annotations

from hypothesis import strategies as st

from plantwire.errors import InvalidNameError
from plantwire.model import INT64_MAX, INT64_MIN, AssetPath, Batch, Quality, Sample
from plantwire.names import check_metric_name, check_segment

# Letters from many scripts plus every character line protocol treats specially.
_name_chars = st.one_of(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
    st.sampled_from(list(" ,=\"\\'#+/$_-.:é温度🏭")),
)
raw_names = st.text(_name_chars, min_size=1, max_size=40)


def _valid(check):  # type: ignore[no-untyped-def]
    def accept(text: str) -> bool:
        try:
            check(text)
        except InvalidNameError:
            return False
        return True

    return accept


segments = raw_names.filter(_valid(check_segment))
metric_names = raw_names.filter(_valid(check_metric_name))

finite_floats = st.floats(allow_nan=False, allow_infinity=False)
int64s = st.integers(INT64_MIN, INT64_MAX)
strings = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)
values = st.one_of(finite_floats, int64s, st.booleans(), strings)
timestamps = st.integers(0, INT64_MAX - 1)
qualities = st.sampled_from(list(Quality))


@st.composite
def samples(draw: st.DrawFn) -> Sample:
    quality = draw(qualities)
    value = draw(values | st.none()) if quality is not Quality.GOOD else draw(values)
    return Sample(draw(timestamps), draw(metric_names), value, quality)


assets = st.builds(
    AssetPath,
    segments,
    segments.filter(lambda s: s not in {"alerts", "deadletter", "services"}),
    segments,
    segments,
)
send_times = st.none() | st.integers(0, INT64_MAX)  # a batch's optional ``sent``
batches = st.builds(
    Batch,
    segments,
    st.integers(0, INT64_MAX),
    assets,
    st.lists(samples(), max_size=20),
    send_times,
)
