"""KeyedLocks: one holder per key at a time, keys independent, nothing kept after use."""

from __future__ import annotations

import threading
import time

from matih_ml.keyed_locks import KeyedLocks


def test_holders_of_one_key_take_turns_and_other_keys_do_not_wait() -> None:
    locks = KeyedLocks()
    inside: list[str] = []
    overlaps: list[tuple[str, ...]] = []
    guard = threading.Lock()
    other_done = threading.Event()

    def work(key: str, name: str) -> None:
        with locks.hold(key):
            with guard:
                inside.append(name)
                same = [n for n in inside if n[0] == name[0]]
                if len(same) > 1:
                    overlaps.append(tuple(same))
            time.sleep(0.05)
            with guard:
                inside.remove(name)

    a_holds = threading.Event()
    release_a = threading.Event()

    def hold_a() -> None:
        with locks.hold("a"):
            a_holds.set()
            release_a.wait(10)

    holder = threading.Thread(target=hold_a)
    holder.start()
    assert a_holds.wait(10)
    # "b" goes ahead while "a" is held.
    t = threading.Thread(target=lambda: (work("b", "b0"), other_done.set()))
    t.start()
    assert other_done.wait(10)
    release_a.set()
    holder.join()

    threads = [threading.Thread(target=work, args=("a", f"a{i}")) for i in range(8)]
    threads += [threading.Thread(target=work, args=("b", f"b{i}")) for i in range(1, 8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []
    assert len(locks) == 0  # every key dropped once nobody holds or waits for it


def test_an_exception_inside_releases_the_key() -> None:
    locks = KeyedLocks()
    try:
        with locks.hold("k"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert len(locks) == 0
    done = threading.Event()

    def take() -> None:
        with locks.hold("k"):
            done.set()

    threading.Thread(target=take, daemon=True).start()
    assert done.wait(5)
