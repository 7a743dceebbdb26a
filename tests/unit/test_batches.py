"""core.batches: the one helper that cuts runs of events into channel-sized batches."""

from hypothesis import given
from hypothesis import strategies as st

from kubeflume_agent.core.batches import batch_limit, batches


@given(st.lists(st.integers(), max_size=50), st.integers(min_value=1, max_value=20))
def test_batches_keep_every_item_in_order_and_none_is_too_large(items: list[int], size: int) -> None:
    cut = list(batches(items, size))
    assert [item for batch in cut for item in batch] == items
    assert all(0 < len(batch) <= size for batch in cut)
    assert len(cut) == -(-len(items) // size)


def test_a_run_that_fits_is_handed_on_as_it_is() -> None:
    items = [1, 2, 3]
    (only,) = batches(items, 3)
    assert only is items


def test_the_limit_is_the_wanted_size_capped_by_the_channels() -> None:
    assert batch_limit(100) == 100
    assert batch_limit(100, 20) == 20
    assert batch_limit(100, 500) == 100
