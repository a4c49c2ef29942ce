"""A stateful property test: whatever order of splits, releases, deliveries and recall, the lot's ledger
conserves quantity and its head is the hash chain of the events recorded.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from registry_support import PARCEL_STATE, fresh_hash, fresh_lot, fresh_parcel, next_head

RECEIVED, SPLIT, RELEASED, NEXT_SEQ, HEAD = 4, 5, 6, 7, 9


def test_ledger_conserves_quantity_and_head_follows_events(w3, registry, accounts, expect_revert):
    tester = w3.provider.ethereum_tester
    fns = registry.functions

    class LotMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.snapshot = tester.take_snapshot()
            self.lot = fresh_lot()
            self.head = b"\x00" * 32
            self.seq = 0
            self.received = 50
            self.parcels: dict[bytes, tuple[int, str]] = {}  # id -> (quantity, state)
            self.recalled = False
            self.send(fns.declareLot(self.lot, 60, self._hash()), accounts.enterprise)
            self.send(fns.recordEntry(self.lot, 1, self.received, self._hash()), accounts.warehouse)
            self.send(fns.recordInspection(self.lot, 2, 0, self._hash()), accounts.customs)
            self.send(fns.recordStorage(self.lot, 3, self._hash()), accounts.warehouse)

        def teardown(self) -> None:
            tester.revert_to_snapshot(self.snapshot)

        def _hash(self) -> bytes:
            self.pending = fresh_hash()
            return self.pending

        def send(self, fn, sender):
            fn.transact({"from": sender})
            self.head = next_head(self.head, self.pending)
            self.seq += 1

        def available(self) -> int:
            return self.received - sum(q for q, _ in self.parcels.values())

        @rule(quantity=st.integers(min_value=1, max_value=30))
        def split(self, quantity):
            parcel = fresh_parcel()
            call = fns.splitParcel(self.lot, self.seq, parcel, quantity, self._hash())
            if self.recalled:
                with expect_revert("TraceRegistryLotRecalled", self.lot):
                    call.transact({"from": accounts.warehouse})
            elif quantity > self.available():
                with expect_revert("TraceRegistryOverSplit", self.lot, quantity, self.available()):
                    call.transact({"from": accounts.warehouse})
            else:
                self.send(call, accounts.warehouse)
                self.parcels[parcel] = (quantity, "Split")

        @precondition(lambda self: any(state == "Split" for _, state in self.parcels.values()))
        @rule(data=st.data())
        def release(self, data):
            parcel = data.draw(st.sampled_from([p for p, (_, s) in self.parcels.items() if s == "Split"]))
            if not self.recalled:
                for kind, sender in enumerate((accounts.enterprise, accounts.payment, accounts.carrier)):
                    self.send(fns.attachDocument(parcel, self.seq, kind, fresh_hash(), self._hash()), sender)
            call = fns.releaseParcel(parcel, self.seq, self._hash())
            if self.recalled:
                with expect_revert("TraceRegistryLotRecalled", self.lot):
                    call.transact({"from": accounts.customs})
                return
            self.send(call, accounts.customs)
            self.parcels[parcel] = (self.parcels[parcel][0], "Released")

        @precondition(lambda self: any(state == "Released" for _, state in self.parcels.values()))
        @rule(data=st.data())
        def deliver(self, data):
            parcel = data.draw(st.sampled_from([p for p, (_, s) in self.parcels.items() if s == "Released"]))
            self.send(fns.recordDelivery(parcel, self.seq, self._hash()), accounts.carrier)
            self.parcels[parcel] = (self.parcels[parcel][0], "Delivered")

        @precondition(lambda self: not self.recalled)
        @rule()
        def recall(self):
            self.send(fns.recall(self.lot, self.seq, self._hash()), accounts.customs)
            self.recalled = True

        @invariant()
        def ledger_and_head_match(self):
            lot = fns.getLot(self.lot).call()
            assert lot[RELEASED] <= lot[SPLIT] <= lot[RECEIVED] == self.received
            assert lot[SPLIT] == sum(q for q, _ in self.parcels.values())
            assert lot[RELEASED] == sum(q for q, s in self.parcels.values() if s != "Split")
            assert (lot[NEXT_SEQ], lot[HEAD]) == (self.seq, self.head)
            for parcel, (_, state) in self.parcels.items():
                assert fns.getParcel(parcel).call()[1] == PARCEL_STATE[state]
                assert fns.isRecalled(parcel).call() == self.recalled

    run_state_machine_as_test(
        LotMachine,
        settings=settings(
            max_examples=8,
            stateful_step_count=10,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
