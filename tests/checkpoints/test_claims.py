"""Claims, leases, results, registrations and stop requests: what one worker sees, and races between many."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cajajejo.checkpoints import (
    CLAIMS_DIR,
    COMPLETE_FILE,
    RESULTS_DIR,
    CheckpointDir,
    Claim,
    checkpoint_name,
    claim_file_name,
    parse_claim_file_name,
)
from tests.checkpoints.support import publish


def claim(
    directory: CheckpointDir, step: int, worker: str = "w1", role: str = "eval", lease: float = 30
) -> Claim | None:
    return directory.claim(checkpoint_name(step), role=role, worker=worker, lease_seconds=lease)


def test_a_claim_is_held_until_a_result_then_never_given_again(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path)
    publish(directory, 1)
    first = claim(directory, 1)
    assert first is not None
    assert (first.attempt, first.failures, first.worker) == (1, 0, "w1")
    assert first.path == tmp_path / CLAIMS_DIR / "eval" / "step-00000001.1.json"
    assert claim(directory, 1, "w2") is None  # live
    assert directory.record_result(first, {"accuracy": 0.5, "nan": float("nan")})
    assert not directory.record_result(first, {"accuracy": 0.9})  # the first result stays
    result = directory.result("eval", "step-00000001")
    assert result is not None
    assert (result.status, result.value, result.worker, result.attempt) == (
        "ok",
        {"accuracy": 0.5, "nan": None},
        "w1",
        1,
    )
    directory.release(first, "done")
    assert claim(directory, 1, "w2") is None  # a result: never claimed again
    assert directory.finished("eval") == {"step-00000001"}
    assert directory.results("other") == {}


def test_claims_and_results_are_per_role(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path)
    publish(directory, 1)
    helm = claim(directory, 1, role="helm")
    perplexity = claim(directory, 1, role="perplexity")
    assert helm is not None
    assert perplexity is not None
    assert directory.record_result(helm, {"score": 1})
    assert directory.finished("helm") == {"step-00000001"}
    assert directory.finished("perplexity") == set()
    assert directory.roles() == ["helm", "perplexity"]


def test_an_expired_claim_is_taken_over_as_the_next_attempt_and_its_holder_learns_it_lost(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path)
    publish(directory, 1)
    dead = claim(directory, 1, "dead", lease=0.2)
    assert dead is not None
    renewed = directory.renew(dead)
    assert renewed is not None
    assert renewed.renewed_at > dead.renewed_at
    assert claim(directory, 1, "w2") is None
    time.sleep(0.3)
    taker = claim(directory, 1, "w2")
    assert taker is not None
    assert (taker.attempt, taker.failures) == (2, 1)  # a worker that died counts as a failed attempt
    assert taker.last_error is not None
    assert "lease of worker dead expired" in taker.last_error
    assert directory.renew(dead) is None  # the slow holder learns it lost; attempt 2's file is untouched
    newest = directory.newest_claim("eval", "step-00000001")
    assert newest is not None
    assert (newest.worker, newest.status(time.time())) == ("w2", "live")


def test_released_claims_are_free_at_once_and_only_failures_count(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path)
    publish(directory, 1)
    first = claim(directory, 1)
    assert first is not None
    directory.release(first, "failed", "RuntimeError: out of memory")
    second = claim(directory, 1, "w2")
    assert second is not None
    assert (second.attempt, second.failures, second.last_error) == (2, 1, "RuntimeError: out of memory")
    directory.release(second, "interrupted")
    third = claim(directory, 1, "w3")
    assert third is not None
    assert (third.attempt, third.failures) == (3, 1)
    with pytest.raises(ValueError, match="outcome"):
        directory.release(third, "exploded")


@pytest.mark.parametrize(
    ("role", "worker", "name"),
    [("", "w", "step-1"), ("a/b", "w", "step-1"), ("r", "-w", "step-1"), ("r", "w", "../x"), ("r", "w", ".hidden")],
)
def test_roles_workers_and_names_must_be_safe_file_names(tmp_path: Path, role: str, worker: str, name: str) -> None:
    with pytest.raises(ValueError, match="must be"):
        CheckpointDir(tmp_path).claim(name, role=role, worker=worker, lease_seconds=1)


def test_a_link_retried_over_nfs_that_answers_eexist_is_still_ours(tmp_path: Path) -> None:
    """NFS resends a LINK whose reply was lost; the resent one answers EEXIST although the first one worked."""
    directory = CheckpointDir(tmp_path)
    publish(directory, 1)
    real_link = os.link

    def link_then_eexist(source: Any, target: Any) -> None:
        real_link(source, target)
        raise FileExistsError(target)

    with mock.patch.object(os, "link", link_then_eexist):  # the module's `os` is this one
        mine = claim(directory, 1)
    assert mine is not None
    assert claim(directory, 1, "w2") is None


# Races: threads and processes


def test_of_many_threads_exactly_one_claims_and_exactly_one_result_wins(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path)
    for step in range(1, 21):
        publish(directory, step)
    claims: list[Claim] = []
    recorded: list[str] = []
    barrier = threading.Barrier(8)

    def worker(index: int) -> None:
        barrier.wait()
        for step in range(1, 21):
            got = claim(directory, step, f"w{index}")
            if got is not None:
                claims.append(got)
        barrier.wait()
        for got in list(claims):  # every thread tries to record every result: the first one wins
            if directory.record_result(got, {"by": index}):
                recorded.append(got.name)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(c.name for c in claims) == [checkpoint_name(s) for s in range(1, 21)]
    assert sorted(recorded) == [checkpoint_name(s) for s in range(1, 21)]


def test_of_many_threads_exactly_one_takes_over_an_expired_claim(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path)
    for step in range(1, 11):
        publish(directory, step)
        assert claim(directory, step, "dead", lease=0.05) is not None
    time.sleep(0.1)
    takers: list[Claim] = []
    barrier = threading.Barrier(6)

    def worker(index: int) -> None:
        barrier.wait()
        for step in range(1, 11):
            got = claim(directory, step, f"w{index}")
            if got is not None:
                takers.append(got)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(c.name for c in takers) == [checkpoint_name(s) for s in range(1, 11)]
    assert {c.attempt for c in takers} == {2}
    assert sorted(os.listdir(tmp_path / CLAIMS_DIR / "eval"))[:2] == ["step-00000001.1.json", "step-00000001.2.json"]


CLAIMER = """
import sys, time
from cajajejo.checkpoints import CheckpointDir, checkpoint_name
directory, worker, start = CheckpointDir(sys.argv[1]), sys.argv[2], float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))  # all processes start claiming at the same moment
mine = []
for step in range(1, 41):
    got = directory.claim(checkpoint_name(step), role="eval", worker=worker, lease_seconds=30)
    if got is not None and directory.record_result(got, {"worker": worker}):
        mine.append(got.name)
print(" ".join(mine))
"""


def test_processes_claiming_the_same_checkpoints_split_them_without_overlap(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path / "checkpoints")
    for step in range(1, 41):
        publish(directory, step)
    start = time.time() + 1.0
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, str(directory.path), f"p{i}", str(start)], stdout=subprocess.PIPE, text=True
        )
        for i in range(4)
    ]
    outputs = [p.communicate(timeout=60)[0].split() for p in processes]
    assert all(p.returncode == 0 for p in processes)
    everything = [name for output in outputs for name in output]
    assert sorted(everything) == [checkpoint_name(s) for s in range(1, 41)]  # each exactly once
    assert sum(1 for output in outputs if output) >= 2  # they really raced
    results = directory.results("eval")
    assert all(results[name].value["worker"] == f"p{i}" for i, output in enumerate(outputs) for name in output)


# Pruning waits for evaluators


def test_prune_keeps_what_a_registered_role_or_an_open_claim_still_needs(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path)
    for step in range(1, 7):
        publish(directory, step)
    directory.register_watcher("helm", "w1")
    assert directory.registered_roles() == {"helm"}
    for step in (1, 2, 3):
        got = claim(directory, step, role="helm")
        assert got is not None
        directory.record_result(got, {})
    busy = claim(directory, 1, role="perplexity")  # a role nobody registered, with an open claim
    assert busy is not None
    # helm has not finished 4 (and 5, 6 are the newest); perplexity holds 1 without a result.
    assert directory.prune(keep_last=2) == ["step-00000002", "step-00000003"]
    assert [c.name for c in directory.published()] == [checkpoint_name(s) for s in (1, 4, 5, 6)]
    directory.record_result(busy, {})
    got = claim(directory, 4, role="helm")
    assert got is not None
    directory.record_result(got, {})
    assert directory.prune(keep_last=2) == ["step-00000001", "step-00000004"]
    assert not [f for f in os.listdir(tmp_path / CLAIMS_DIR / "helm") if f.startswith("step-00000001.")]
    assert directory.finished("helm") == {checkpoint_name(s) for s in (1, 2, 3, 4)}  # results stay
    directory.unregister_watcher("helm")
    assert directory.registered_roles() == set()
    assert directory.prune(keep_last=1) == ["step-00000005"]


def test_a_stop_request_is_first_writer_wins_and_completion_lists_the_checkpoints(tmp_path: Path) -> None:
    directory = CheckpointDir(tmp_path)
    assert directory.stop_request() is None
    first = directory.request_stop("val loss plateaued", by="helm-0")
    assert (first.reason, first.by) == ("val loss plateaued", "helm-0")
    second = directory.request_stop("another reason", by="perplexity-0")
    assert (second.reason, second.by) == ("val loss plateaued", "helm-0")
    directory.clear_stop_request()
    assert directory.stop_request() is None
    publish(directory, 1)
    publish(directory, 2)
    directory.mark_complete(step=2)
    assert json.loads((tmp_path / COMPLETE_FILE).read_text())["checkpoints"] == ["step-00000001", "step-00000002"]


# Property tests: file names and file contents that claims and results are read from

names = st.text(
    alphabet=st.characters(blacklist_characters="/\0", blacklist_categories=["Cs"]), min_size=1, max_size=60
).filter(lambda n: not n.startswith("."))


@given(name=names, attempt=st.integers(min_value=1, max_value=999_999_999))
def test_claim_file_names_round_trip(name: str, attempt: int) -> None:
    assert parse_claim_file_name(claim_file_name(name, attempt)) == (name, attempt)


@given(text=st.text(max_size=80))
def test_parsing_any_file_name_never_fails_and_skips_temporary_files(text: str) -> None:
    parsed = parse_claim_file_name(text)
    if parsed is not None:
        assert claim_file_name(*parsed) == text
    assert parse_claim_file_name(f".tmp-{text}") is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(garbage=st.binary(max_size=300), json_garbage=st.dictionaries(st.text(max_size=10), st.integers()))
def test_torn_or_foreign_claim_and_result_files_never_break_readers_or_block_progress(
    tmp_path: Path, garbage: bytes, json_garbage: dict[str, int]
) -> None:
    directory = CheckpointDir(tmp_path / f"d{time.monotonic_ns()}")
    publish(directory, 1)
    publish(directory, 2)
    claims = directory.path / CLAIMS_DIR / "eval"
    results = directory.path / RESULTS_DIR / "eval"
    claims.mkdir(parents=True)
    results.mkdir(parents=True)
    (claims / "step-00000001.1.json").write_bytes(garbage)
    (claims / "step-00000002.1.json").write_text(json.dumps(json_garbage))
    (results / "step-00000002.json").write_bytes(garbage)
    (results / ".tmp-step-00000001.json.1.ab").write_bytes(garbage)
    assert directory.newest_claim("eval", "step-00000001") is None
    taken = claim(directory, 1)  # an unreadable claim counts as over
    assert taken is not None
    assert taken.attempt == 2
    assert directory.result("eval", "step-00000002") is None  # unreadable...
    assert directory.finished("eval") == {"step-00000002"}  # ...but there: done, never claimed again
    assert claim(directory, 2) is None
    assert set(directory.results("eval")) == set()
