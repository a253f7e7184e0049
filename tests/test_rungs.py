"""The rung book (tune_ext/schedulers/rungs.py) without Ray: scripted and random streams against a
naive reference, serialise -> JSON -> load -> the same answers, and what loading refuses."""
import json
import math
import random
import subprocess
import sys

import pytest

from tune_ext.schedulers.rungs import BOOK_VERSION, RungBook

INF = math.inf


class NaiveBook:
    """Reference: the same questions answered by sorting whole rungs (no ranking structure, no
    counters, nothing incremental)."""

    def __init__(self, eta, ties_by_arrival=True):
        self.eta, self.by_arrival = eta, ties_by_arrival
        self.brackets = []      # [milestones, capacity, members, closed, done]
        self.trials = {}        # tid -> dict(bracket, records, waiting, alive, stopped)
        self.seq = 0

    def open_bracket(self, milestones, capacity=None):
        self.brackets.append([list(milestones), capacity, [], False, [False] * len(milestones)])
        return len(self.brackets) - 1

    def close(self, b):
        was = not self.brackets[b][3]
        self.brackets[b][3] = True
        return was

    def join(self, tid, b):
        self.trials[tid] = dict(bracket=b, records=[], waiting=False, alive=True, stopped=False)
        br = self.brackets[b]
        br[2].append(tid)
        if br[1] is not None and len(br[2]) >= br[1]:
            br[3] = True

    def rung_records(self, b, k):
        """[(score, seq, tid)] of rung k, best first (ties: earlier arrival first)."""
        out = [(e["records"][k][0], e["records"][k][1], tid) for tid, e in self.trials.items()
               if e["bracket"] == b and len(e["records"]) > k]
        return sorted(out, key=lambda r: (-r[0], r[1]))

    def record(self, tid, rung, score, wait=False):
        e = self.trials[tid]
        self.seq += 1
        before = self.rung_records(e["bracket"], rung)
        while len(e["records"]) <= rung:
            e["records"].append((score, self.seq))
        e["waiting"] = wait
        if score == -INF:
            return len(before)
        return sum(s > score for s, _, _ in before) if not self.by_arrival else \
            sum((s, -q) > (score, -self.seq) for s, q, _ in before)

    def continues(self, tid, t, score):
        rung = max(k for k, m in enumerate(self.brackets[self.trials[tid]["bracket"]][0]) if m <= t)
        ahead = self.record(tid, rung, score)
        e = self.trials[tid]
        n = len(self.rung_records(e["bracket"], rung))
        if rung < len(self.brackets[e["bracket"]][0]) - 1 and ahead * self.eta < n:
            return True
        e["alive"], e["stopped"] = False, True
        return False

    def promotable(self, b):
        for k in range(len(self.brackets[b][0]) - 2, -1, -1):
            ranked = self.rung_records(b, k)
            top = math.floor(len(ranked) / self.eta)
            for i, (_, _, tid) in enumerate(ranked):
                e = self.trials[tid]
                if e["alive"] and e["waiting"] and len(e["records"]) - 1 == k:
                    if i < top:
                        return tid
                    break
        return None

    def promote(self, tid):
        self.trials[tid]["waiting"] = False

    def stop(self, tid):
        self.trials[tid].update(alive=False, waiting=False, stopped=True)

    def _forget(self, e):
        if e["waiting"]:
            e["records"].pop()
            e["waiting"] = False

    def withdraw(self, tid, forget, stopped):
        e = self.trials[tid]
        if forget:
            self._forget(e)
        e["alive"] = False
        e["stopped"] = e["stopped"] or stopped

    def revive(self, tid, forget=False):
        e = self.trials[tid]
        if e["alive"]:
            return
        if forget:
            self._forget(e)
        e["alive"] = True

    def complete_rungs(self, b):
        milestones, _, members, closed, done = self.brackets[b]
        out = []
        for k in range(len(milestones)):
            if done[k]:
                continue
            heading = [t for t in members if self.trials[t]["alive"]
                       and not self.trials[t]["waiting"] and len(self.trials[t]["records"]) == k]
            if not (closed if k == 0 else done[k - 1]) or heading:
                break
            done[k] = True
            records = self.rung_records(b, k)
            alive = [tid for _, _, tid in records if self.trials[tid]["alive"]]
            keep = 0 if k == len(milestones) - 1 else max(1, len(records) // self.eta)
            winners = [t for t in alive[:keep] if len(self.trials[t]["records"]) - 1 == k]
            for t in winners:
                self.promote(t)
            for t in alive[keep:]:
                self.stop(t)
            out.append((winners, alive[keep:]))
        return out


def where(book, tid):
    """A trial's standing, comparable across RungBook and NaiveBook."""
    if isinstance(book, NaiveBook):
        e = book.trials[tid]
        return e["bracket"], list(e["records"]), e["waiting"], e["alive"], e["stopped"]
    e = book.trials[tid]
    return e.bracket, list(e.records), e.waiting, e.alive, e.stopped


def play(books, rng, steps, brackets, sync=False, ties=True, serialise_at=None):
    """Apply the same random operations (each one a scheduler could issue at that point) to every
    book; every answer must agree. At step ``serialise_at`` books[0] is replaced by
    from_data(json(to_data())) of itself. Returns the trial ids and how many answers moved a
    trial (promotions, stops at arrival, completed rungs)."""
    ref = books[-1]
    ids, decided = [], 0

    def n_rungs(t):
        return len(ref.brackets[ref.trials[t]["bracket"]][0])

    for step in range(steps):
        if step == serialise_at:
            data = json.loads(json.dumps(books[0].to_data(), allow_nan=False))
            books[0] = RungBook.from_data(data)
            assert books[0].to_data() == data
        op = rng.random()
        live = [t for t in ids if ref.trials[t]["alive"]]
        movable = [t for t in live if not ref.trials[t]["waiting"]
                   and len(ref.trials[t]["records"]) < n_rungs(t)]
        got = None
        if op < 0.15 or not live:                  # a new trial joins
            open_ = [b for b in range(len(brackets)) if not (sync and ref.brackets[b][3])]
            if open_:
                b, tid = rng.choice(open_), f"t{len(ids):03d}"
                ids.append(tid)
                for book in books:
                    book.join(tid, b)
        elif op < 0.6 and movable:                 # a result reaches a rung
            tid = rng.choice(movable)
            top = len(ref.trials[tid]["records"]) - 1
            rung = min(n_rungs(tid) - 1, top + 1 + (rng.random() < 0.2 and not sync))
            score = rng.choice([rng.random(), float(rng.randint(0, 3)), -INF])
            if not ties:
                t = ref.brackets[ref.trials[tid]["bracket"]][0][rung] + rng.choice([0, 0.5])
                got = [book.continues(tid, t, score) for book in books]
                decided += not got[0]
            else:
                wait = sync or rng.random() < 0.8
                got = [book.record(tid, rung, score, wait=wait) for book in books]
        elif op < 0.7 and not sync:                # a worker frees: promote
            b = rng.randrange(len(brackets))
            got = [book.promotable(b) for book in books]
            if got[0] is not None:
                decided += 1
                for book in books:
                    book.promote(got[0])
        elif op < 0.75:                            # error, early end or removal
            tid = rng.choice(live)
            forget, stopped = rng.random() < 0.5 and not sync, rng.random() < 0.5
            for book in books:
                book.withdraw(tid, forget, stopped)
        elif op < 0.8:                             # re-queued after an error
            dead = [t for t in ids if not ref.trials[t]["alive"] and not ref.trials[t]["stopped"]]
            if dead:
                tid, forget = rng.choice(dead), sync or rng.random() < 0.5
                for book in books:
                    book.revive(tid, forget=forget)
        elif op < 0.83:                            # stopped by the scheduler
            tid = rng.choice(live)
            for book in books:
                book.stop(tid)
        elif sync:                                 # the controller's step: rungs may complete
            b = rng.randrange(len(brackets))
            if rng.random() < 0.1:
                for book in books:
                    book.close(b)
            got = [book.complete_rungs(b) for book in books]
            decided += len(got[0])
        if got is not None:
            assert all(g == got[0] for g in got), (step, got)
        for t in ids:
            assert len({repr(where(book, t)) for book in books}) == 1, (step, t)
    return ids, decided


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", ["promotion", "stopping", "sync"])
def test_random_streams_agree_with_the_naive_reference_across_a_json_round_trip(kind, seed):
    """Every answer (ranks, continue?, promotable?, completed rungs) and every trial's standing
    agree with the naive reference, before and after the book is serialised to JSON and loaded
    halfway through: a loaded book decides exactly as one that was never serialised."""
    rng = random.Random(seed)
    brackets = [[1.0, 3.0, 9.0, 27.0], [3.0, 9.0, 27.0]]
    ties = kind != "stopping"
    capacity = 16 if kind == "sync" else None     # SHA: full brackets close
    books = [RungBook(3, ties_by_arrival=ties), RungBook(3, ties_by_arrival=ties),
             NaiveBook(3, ties_by_arrival=ties)]
    for book in books:
        for m in brackets:
            book.open_bracket(m, capacity)
    ids, decided = play(books, rng, 600, brackets, sync=kind == "sync", ties=ties,
                        serialise_at=300)
    assert len(ids) > 15 and decided >= 3
    loaded, kept = books[0], books[1]
    assert loaded.to_data() == kept.to_data()
    for b in range(len(brackets)):
        assert loaded.promotable(b) == kept.promotable(b)
        for k in range(len(brackets[b])):
            assert loaded.size(b, k) == kept.size(b, k) == len(books[2].rung_records(b, k))
            rl, rk = loaded.brackets[b].rungs[k], kept.brackets[b].rungs[k]
            assert (rl.num_waiting, rl.num_heading) == (rk.num_waiting, rk.num_heading)


def test_scripted_promotion_stream():
    """Li et al. 2020, Algorithm 2 on nine arrivals in rung 0 (eta = 3): the best waiting trial is
    promotable only while it ranks in the top floor(n / 3), promoted ones still count, a higher
    rung is asked first."""
    book = RungBook(3)
    b = book.open_bracket([1, 3, 9])
    answers = []
    for tid, score in zip("abcdefghi", [5, 3, 7, 6, 1, 4, 8, 2, 0]):
        book.join(tid, b)
        ahead = book.record(tid, 0, score, wait=True)
        promotable = book.promotable(b)
        answers.append((ahead, promotable))
        if promotable is not None:
            book.promote(promotable)
    assert answers == [(0, None), (1, None), (0, "c"), (1, None), (4, None), (3, "d"),
                       (0, "g"), (6, None), (8, None)]
    # c reaches rung 1 first and waits there: one record, top floor(1/3) = 0, nothing promotable
    assert book.record("c", 1, 10, wait=True) == 0 and book.promotable(b) is None
    assert book.record("g", 2, 1) == 0            # g oversteps rung 1 and lands in rung 2 ...
    assert (book.size(b, 1), book.size(b, 2)) == (2, 1)    # ... recorded in both
    assert book.record("d", 1, 9, wait=True) == 1   # 3 records in rung 1: c (10) leads
    assert book.promotable(b) == "c"
    assert book.brackets[b].rungs[1].num_waiting == 2


def test_stopping_ranks_ties_and_non_finite_scores():
    """ASHA "stopping": continue iff (strictly better results) * eta < (results in the rung), at
    arrival; equal scores are not ahead; -inf is behind everything, other -inf included."""
    book = RungBook(3, ties_by_arrival=False)
    b = book.open_bracket([1, 3])
    for tid in "abcdef":
        book.join(tid, b)
    got = [book.continues(t, 1, s) for t, s in zip("abcdef", [1.0, 1.0, 2.0, -INF, -INF, 1.5])]
    # a alone; b ties a (0 ahead: 0 < 2); c best; d: 3 ahead of 4; e: 4 ahead of 5 (the other
    # -inf too); f: only c ahead, 1 * 3 < 6
    assert got == [True, True, True, False, False, True]
    assert all(book.trials[t].stopped and not book.trials[t].alive for t in "de")
    assert book.brackets[b].rungs[1].num_heading == 4
    assert not book.continues("a", 4, 9.0)         # the last rung: every trial stops there
    assert book.trials["a"].stopped and book.size(b, 1) == 1
    assert book.brackets[b].rungs[1].num_heading == 3


def test_sha_rung_completion_counts_every_arrival_and_waits_for_every_live_trial():
    book = RungBook(3)
    b = book.open_bracket([1, 3, 9], capacity=None)
    for tid in "abcdefghij":
        book.join(tid, b)
    for tid, score in zip("abcdefghi", [5, 3, 7, 6, 1, 4, 8, 2, 0]):
        book.record(tid, 0, score, wait=True)
    assert book.complete_rungs(b) == []            # open bracket: more trials may join
    book.close(b)
    assert not book.is_complete(b, 0) and book.complete_rungs(b) == []   # j still heading there
    book.withdraw("a", forget=False, stopped=False)  # a errors while paused: counts, not ranked
    book.withdraw("j", forget=False, stopped=True)   # j ends before rung 0: no longer awaited
    [(winners, losers)] = book.complete_rungs(b)
    # n = 9 arrivals (a's included): the top floor(9 / 3) = 3 of the live ones continue
    assert winners == ["g", "c", "d"]
    assert losers == ["f", "b", "h", "e", "i"] and all(book.trials[t].stopped for t in losers)
    assert book.trials["a"].alive is False and not book.trials["a"].stopped
    assert book.brackets[b].rungs[1].num_heading == 3 and book.rung_done(b, 0)
    assert book.position("g") == 1 and not book.is_complete(b, 1)
    for tid, score in [("g", 1), ("c", 2)]:
        book.record(tid, 1, score, wait=True)
    assert book.complete_rungs(b) == []            # d has not arrived
    book.record("d", 1, 0, wait=True)
    assert book.complete_rungs(b) == [(["c"], ["g", "d"])]


def test_withdraw_forget_and_revive():
    book = RungBook(3)
    b = book.open_bracket([1, 3, 9])
    for tid in "xyz":
        book.join(tid, b)
    book.record("x", 0, 0.9, wait=True)
    book.record("y", 0, 0.5)
    assert book.trials["x"].next_milestone == 3.0 and book.reached("x", 2) == -1
    book.withdraw("x", forget=True, stopped=False)  # errored while paused: its record leaves
    e = book.trials["x"]
    assert (e.rung, e.records, e.waiting, e.alive) == (-1, [], False, False)
    assert book.size(b, 0) == 1 and book.reached("x", 1) == 0 and e.next_milestone == 1.0
    book.revive("x")
    assert book.brackets[b].rungs[0].num_heading == 2   # x and z head to rung 0 again
    assert book.record("x", 0, 0.1, wait=True) == 1     # arrives again, behind y
    book.withdraw("y", forget=True, stopped=True)       # y was not waiting: nothing to forget
    assert book.size(b, 0) == 2 and book.trials["y"].stopped
    with pytest.raises(ValueError, match="already has a record in rung 0"):
        book.record("x", 0, 1.0)


def valid_data():
    book = RungBook(3)
    b = book.open_bracket([1, 3, 9], capacity=4)
    for tid, s in zip("abc", [0.5, -INF, 0.7]):
        book.join(tid, b)
        book.record(tid, 0, s, wait=True)
    book.promote("c")
    return json.loads(json.dumps(book.to_data(), allow_nan=False))


def test_state_is_plain_versioned_json():
    data = valid_data()
    assert data["version"] == BOOK_VERSION == 1
    assert data["trials"]["b"]["records"] == [["-inf", 2]]
    assert RungBook.from_data(data).to_data() == data


@pytest.mark.parametrize("damage, match", [
    (lambda d: d.update(version=0), "version 0, this tune-ext reads version 1"),
    (lambda d: d.update(version="1"), "version '1'"),
    (lambda d: d.pop("trials"), "malformed data.*trials"),
    (lambda d: d["trials"]["a"].update(bracket=3), "trial a: no bracket 3"),
    (lambda d: d["trials"]["a"].update(records=[["0.5", 99]]), "trial a: an arrival"),
    (lambda d: d["trials"]["a"].update(records=[[0.5, 1]] * 4), "more records than rungs"),
    (lambda d: d["trials"]["a"].update(records=[], waiting=True), "trial a waits in no rung"),
    (lambda d: d["trials"]["a"].update(records=[["nan", 1]]), "NaN"),
    (lambda d: d["trials"]["a"].update(alive=1), "flags are not bools"),
    (lambda d: d["brackets"][0].update(done=[True]), "closed/done do not match"),
    (lambda d: d.update(ties_by_arrival="yes"), "ties_by_arrival is not a bool"),
])
def test_load_refuses_other_versions_and_shapes(damage, match):
    data = valid_data()
    damage(data)
    with pytest.raises(ValueError, match="rung book: .*" + match):
        RungBook.from_data(data)
    with pytest.raises(ValueError, match="rung book: expected a dict"):
        RungBook.from_data([data])


def test_importing_the_book_does_not_import_ray():
    code = "import sys, tune_ext.schedulers.rungs, tune_ext.schedulers.brackets; " \
           "print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_scheduler_state_of_another_version_is_a_clear_error():
    from tune_ext.schedulers import ASHAScheduler, SuccessiveHalvingScheduler
    for cls in (ASHAScheduler, SuccessiveHalvingScheduler):
        s = cls(metric="m", mode="max", max_t=9)
        state = json.loads(json.dumps(s.get_state()))
        with pytest.raises(ValueError, match=rf"{cls.__name__}: saved scheduler state has "
                                             rf"version 1, this tune-ext reads version 2"):
            cls(metric="m", mode="max", max_t=9).set_state({**state, "version": 1})
        with pytest.raises(ValueError, match=rf"{cls.__name__}: saved scheduler state: rung "
                                             rf"book: version 7"):
            cls(metric="m", mode="max", max_t=9).set_state(
                {**state, "book": {**state["book"], "version": 7}})
