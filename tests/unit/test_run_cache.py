"""The runs a bridge keeps between batches, apart from the database: what is found, what is
forgotten, and how the bridge stops keeping runs that other writers keep changing."""

from __future__ import annotations

from flow45.store.run_cache import LONGEST_KEPT, REST, WINDOW, KeptRun, RunCache


def kept_run(run_id: int, instances: list[int], version: str = "7") -> tuple[int, KeptRun]:
    return run_id, KeptRun([(i, run_id) for i in instances], version, dict.fromkeys(instances, version))


def test_a_batch_finds_its_runs_only_when_every_instance_of_it_is_kept():
    cache = RunCache()
    cache.keep([kept_run(1, [10, 11]), kept_run(2, [20])])
    hit = cache.find([20, 10])
    assert hit is not None
    assert hit.run_ids == [1, 2]
    assert hit.rows == [(10, 1), (11, 1), (20, 2)]
    assert hit.versions == ["1:7", "2:7", "10:7", "11:7", "20:7"]
    assert cache.find([10, 30]) is None
    assert (cache.hits, cache.misses) == (1, 1)


def test_a_batch_forgets_its_runs_until_it_commits_and_they_are_read_back():
    cache = RunCache()
    cache.keep([kept_run(1, [10]), kept_run(2, [20])])
    cache.after_commit([1], [1])
    assert cache.find([10]) is None and cache.find([20]) is not None
    assert cache.take_to_keep() == [1]
    assert cache.take_to_keep() == []  # once


def test_the_oldest_runs_go_first_past_the_size():
    cache = RunCache(size=2)
    cache.keep([kept_run(1, [10]), kept_run(2, [20]), kept_run(3, [30])])
    assert len(cache) == 2
    assert cache.find([10]) is None and cache.find([30]) is not None


def test_a_run_found_changed_is_forgotten():
    cache = RunCache()
    cache.keep([kept_run(1, [10, 11]), kept_run(2, [20])])
    cache.found_stale([11])
    assert cache.find([10]) is None and cache.find([20]) is not None
    assert cache.stale == 1


def _batches(cache: RunCache, count: int, changed_by_others: bool) -> int:
    """`count` batches of run 1, each read back after it; returns how many took the kept run."""
    took = 0
    for _ in range(count):
        hit = cache.find([10])
        if hit is not None:
            took += 1
            if changed_by_others:
                cache.found_stale([10])  # rolled back; applied again, its run read
        cache.after_commit([1], [1])
        if cache.take_to_keep():
            cache.keep([kept_run(1, [10])])
    return took


def _until_kept_again(cache: RunCache) -> int:
    """Batches of run 1 that found it not kept, until one finds it kept."""
    batches = 0
    while cache.find([10]) is None:
        batches += 1
        cache.after_commit([1], [1])
        if cache.take_to_keep():
            cache.keep([kept_run(1, [10])])
    return batches


def test_runs_that_others_keep_changing_are_not_kept_for_a_while_then_tried_again():
    cache = RunCache()
    cache.keep([kept_run(1, [10])])
    assert _batches(cache, WINDOW, changed_by_others=True) == WINDOW
    assert cache.resting
    assert REST - 2 <= _until_kept_again(cache) <= REST + 1  # resting: nothing read back, no check failed
    _batches(cache, WINDOW, changed_by_others=True)  # tried again, failed again: a rest twice as long
    assert 2 * REST - 2 <= _until_kept_again(cache) <= 2 * REST + 1
    assert _batches(cache, 2 * WINDOW, changed_by_others=False) == 2 * WINDOW
    assert not cache.resting
    _batches(cache, WINDOW, changed_by_others=True)  # after a good window, the first rest again
    assert REST - 2 <= _until_kept_again(cache) <= REST + 1


def test_a_few_changes_by_others_do_not_stop_the_keeping():
    cache = RunCache()
    cache.keep([kept_run(1, [10])])
    for n in range(4 * WINDOW):
        assert cache.find([10]) is not None
        if n % 8 == 0:
            cache.found_stale([10])
        cache.keep([kept_run(1, [10])])
    assert not cache.resting


def test_a_run_kept_longer_than_a_version_number_can_be_trusted_is_read_again():
    now = [0.0]
    cache = RunCache(clock=lambda: now[0])
    cache.keep([kept_run(1, [10]), kept_run(2, [20])])
    now[0] = LONGEST_KEPT / 2
    cache.keep([kept_run(2, [20])])
    now[0] = LONGEST_KEPT + 1
    assert cache.find([10]) is None
    assert cache.find([20]) is not None
    assert len(cache) == 1
