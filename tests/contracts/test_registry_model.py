"""The contract and the pure model (tracer.lifecycle) agree: random operations by random roles on a few lots are
accepted or refused alike (refusals of the same kind), and every lot's ledger conserves quantity after each step.

Bounded for the suite; ``HYPOTHESIS_PROFILE=nightly`` runs many more and longer examples.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from eth_tester.exceptions import TransactionFailed
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from registry_support import (
    LOT_STATE,
    PARCEL_STATE,
    SplitBatch,
    decode_custom_error,
    fresh_hash,
    fresh_lot,
    fresh_parcel,
    revert_data,
)
from web3.exceptions import ContractCustomError

from tracer.exceptions import DuplicateRecord, NotFound, OverRelease, PermissionDenied, StepOutOfOrder, TracerError
from tracer.lifecycle import (
    Disposal,
    InspectionResult,
    LotState,
    ParcelState,
    Step,
    check_delivery,
    check_disposal,
    check_document,
    check_manifest_lot,
    check_parcel_record,
    check_recall,
    check_registration,
    check_release,
    check_role,
    check_rule_clearance,
    check_split,
    check_split_batch,
    ledger_conserved,
    lot_state_after,
)

NIGHTLY = os.environ.get("HYPOTHESIS_PROFILE") == "nightly"
EXAMPLES, STEPS = (300, 100) if NIGHTLY else (5, 40)

# What kind of refusal each model exception stands for, as contract errors.
REFUSALS = {
    PermissionDenied: {"AccessControlUnauthorizedAccount", "TraceRegistryNotLotEnterprise"},
    OverRelease: {"TraceRegistryOverSplit", "TraceRegistryOverRelease", "TraceRegistryOverDisposal"},
    StepOutOfOrder: {
        "TraceRegistryStepOutOfOrder",
        "TraceRegistryLotRecalled",
        "TraceRegistryMissingDocuments",
        "TraceRegistryDocumentExists",
        "TraceRegistryZeroQuantity",
        "TraceRegistryNotLowRisk",
        "TraceRegistryCreditTooLow",
        "TraceRegistryEntryDiscrepancy",
        "TraceRegistryAlreadyReleased",
        "TraceRegistryUnknownParcelIndex",
        "TraceRegistryQuantityBelowParcels",
        "TraceRegistryEmptySplit",
    },
    NotFound: {"TraceRegistryUnknownParcel", "TraceRegistryIndexOutOfSplit"},
    DuplicateRecord: {"TraceRegistryParcelExists"},
}
MODEL_REFUSALS = tuple(REFUSALS)
ROLES = ("enterprise", "other_enterprise", "warehouse", "customs", "carrier", "payment", "outsider")
DOCUMENT_STEPS = (Step.ORDER, Step.PAYMENT, Step.WAYBILL)
_LOT_STATES = {name.lower(): value for name, value in LOT_STATE.items()}
_PARCEL_STATES = {name.lower(): value for name, value in PARCEL_STATE.items()}
LOW_RISK_RANGE, HS_CODE = 1, 402_210_000


@dataclass
class ModelParcel:
    id: bytes
    index: int
    quantity: int
    state: ParcelState = ParcelState.SPLIT
    documents: set[str] = field(default_factory=set)
    # A parcel of a split batch has no record on chain until it is registered (with its batch's proof).
    registered: bool = True
    batch: SplitBatch | None = None
    position: int = 0


@dataclass
class ModelLot:
    id: bytes
    enterprise: str
    declared: int
    classified: bool
    state: LotState = LotState.DECLARED
    recalled: bool = False
    received: int = 0
    split: int = 0
    released: int = 0
    destroyed: int = 0
    returned: int = 0
    seq: int = 1
    parcels: list[ModelParcel] = field(default_factory=list)


def senders(*right: str) -> st.SearchStrategy[str]:
    """Mostly a role that may take the step (so journeys progress), sometimes any role."""
    return st.sampled_from(list(right) * 6 + list(ROLES))


def _role(name: str) -> str:
    return "enterprise" if name == "other_enterprise" else name


def test_contract_and_model_agree_and_conserve_quantity(w3, registry, accounts):
    tester = w3.provider.ethereum_tester
    fns = registry.functions

    class RegistryModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.snapshot = tester.take_snapshot()
            self.lots: list[ModelLot] = []
            self.credit = 0
            fns.addLowRiskRange(401_000_000, 406_999_999, 2).transact({"from": accounts.customs})

        def teardown(self) -> None:
            tester.revert_to_snapshot(self.snapshot)

        # -- the comparison ---------------------------------------------------------------------------------

        def agree(self, predict, call, sender_name: str, apply) -> None:
            """Run the model's ``predict`` and the contract ``call`` from ``sender_name``; both accept (then
            ``apply`` updates the model) or both refuse with the same kind of refusal."""
            try:
                predict()
                expected: type[TracerError] | None = None
            except MODEL_REFUSALS as exc:
                expected = type(exc)
            try:
                call.transact({"from": getattr(accounts, sender_name)})
            except (ContractCustomError, TransactionFailed) as exc:
                name, args = decode_custom_error(registry.abi, revert_data(exc))
                assert expected is not None, f"contract refused with {name}{args}; the model accepts"
                assert name in REFUSALS[expected], f"contract refused with {name}{args}; model: {expected.__name__}"
                return
            assert expected is None, f"contract accepted; the model refuses with {expected.__name__}"
            apply()

        def role_check(self, step: Step, sender: str) -> None:
            check_role(step=step, actor=sender, role=_role(sender))

        # -- operations ---------------------------------------------------------------------------------------

        @precondition(lambda self: len(self.lots) < 3)
        @rule(sender=senders("enterprise", "other_enterprise"), quantity=st.integers(1, 40), classified=st.booleans())
        def declare(self, sender, quantity, classified):
            lot = fresh_lot()
            call = (
                fns.declareLotClassified(lot, quantity, HS_CODE, LOW_RISK_RANGE, fresh_hash())
                if classified
                else fns.declareLot(lot, quantity, fresh_hash())
            )
            address = getattr(accounts, sender)
            self.agree(
                lambda: self.role_check(Step.DECLARATION, sender),
                call,
                sender,
                lambda: self.lots.append(ModelLot(lot, address, quantity, classified)),
            )

        @precondition(lambda self: self.lots)
        @rule(data=st.data(), sender=senders("warehouse"), counted=st.integers(1, 40))
        def enter(self, data, sender, counted):
            lot = data.draw(st.sampled_from(self.lots))

            def predict():
                self.role_check(Step.ENTRY, sender)
                lot_state_after(state=lot.state, step=Step.ENTRY, subject="lot")

            def apply():
                lot.state, lot.received = LotState.ENTERED, counted
                lot.seq += 1

            self.agree(predict, fns.recordEntry(lot.id, lot.seq, counted, fresh_hash()), sender, apply)

        @precondition(lambda self: self.lots)
        @rule(data=st.data(), sender=senders("customs"), result=st.sampled_from(list(InspectionResult)))
        def inspect(self, data, sender, result):
            lot = data.draw(st.sampled_from(self.lots))
            after: list[LotState] = []

            def predict():
                self.role_check(Step.INSPECTION, sender)
                after.append(lot_state_after(state=lot.state, step=Step.INSPECTION, subject="lot", result=result))

            def apply():
                lot.state = after[0]
                lot.seq += 1

            index = list(InspectionResult).index(result)
            self.agree(predict, fns.recordInspection(lot.id, lot.seq, index, fresh_hash()), sender, apply)

        @precondition(lambda self: self.lots)
        @rule(data=st.data(), sender=senders("warehouse"))
        def clear_by_rule(self, data, sender):
            lot = data.draw(st.sampled_from(self.lots))

            def predict():
                self.role_check(Step.RULE_CLEARANCE, sender)
                check_rule_clearance(
                    state=lot.state, subject="lot", range_active=lot.classified, credit_level=self.credit,
                    required_level=2, declared=lot.declared, received=lot.received,
                )  # fmt: skip

            def apply():
                lot.state = LotState.CLEARED
                lot.seq += 1

            self.agree(predict, fns.clearByRule(lot.id, lot.seq, fresh_hash()), sender, apply)

        @precondition(lambda self: any(lot.state is LotState.DECLARED for lot in self.lots))
        @rule(data=st.data(), shortfall=st.integers(0, 1))
        def bring_to_storage(self, data, shortfall):
            """Entry (the count maybe short), a conformant inspection and storage by the right roles, so that
            the steps after storage get explored too."""
            lot = data.draw(st.sampled_from([lot for lot in self.lots if lot.state is LotState.DECLARED]))
            counted = lot.declared - shortfall or lot.declared

            def entered():
                lot.state, lot.received = LotState.ENTERED, counted
                lot.seq += 1

            def advanced(state):
                def apply():
                    lot.state = state
                    lot.seq += 1

                return apply

            self.agree(lambda: None, fns.recordEntry(lot.id, lot.seq, counted, fresh_hash()), "warehouse", entered)
            self.agree(
                lambda: None, fns.recordInspection(lot.id, lot.seq, 0, fresh_hash()), "customs",
                advanced(LotState.CLEARED),
            )  # fmt: skip
            self.agree(
                lambda: check_recall(recalled=False, subject="lot"),
                fns.recordStorage(lot.id, lot.seq, fresh_hash()), "warehouse", advanced(LotState.STORED),
            )  # fmt: skip

        @rule(level=st.integers(0, 3))
        def set_credit_level(self, level):
            fns.setCreditLevel(accounts.enterprise, level).transact({"from": accounts.customs})
            fns.setCreditLevel(accounts.other_enterprise, level).transact({"from": accounts.customs})
            self.credit = level

        @precondition(lambda self: self.lots)
        @rule(data=st.data(), sender=senders("customs"))
        def lift_hold(self, data, sender):
            lot = data.draw(st.sampled_from(self.lots))

            def predict():
                self.role_check(Step.HOLD_LIFT, sender)
                lot_state_after(state=lot.state, step=Step.HOLD_LIFT, subject="lot")

            def apply():
                lot.state = LotState.CLEARED
                lot.seq += 1

            self.agree(predict, fns.liftHold(lot.id, lot.seq, fresh_hash()), sender, apply)

        @precondition(lambda self: self.lots)
        @rule(data=st.data(), sender=senders("warehouse"))
        def store(self, data, sender):
            lot = data.draw(st.sampled_from(self.lots))

            def predict():
                self.role_check(Step.STORAGE, sender)
                lot_state_after(state=lot.state, step=Step.STORAGE, subject="lot")

            def apply():
                lot.state = LotState.STORED
                lot.seq += 1

            self.agree(predict, fns.recordStorage(lot.id, lot.seq, fresh_hash()), sender, apply)

        @precondition(lambda self: self.lots)
        @rule(data=st.data(), sender=senders("warehouse"), quantity=st.integers(1, 15))
        def split(self, data, sender, quantity):
            stored = [lot for lot in self.lots if lot.state is LotState.STORED and not lot.recalled]
            lot, parcel = data.draw(st.sampled_from(stored or self.lots)), fresh_parcel()

            def predict():
                self.role_check(Step.SPLIT, sender)
                check_split(
                    state=lot.state, recalled=lot.recalled, subject="lot", received=lot.received, split=lot.split,
                    quantity=quantity, disposed=lot.destroyed + lot.returned,
                )  # fmt: skip

            def apply():
                lot.parcels.append(ModelParcel(parcel, len(lot.parcels), quantity))
                lot.split += quantity
                lot.seq += 1

            self.agree(predict, fns.splitParcel(lot.id, lot.seq, parcel, quantity, fresh_hash()), sender, apply)

        @precondition(lambda self: self.lots)
        @rule(data=st.data(), sender=senders("warehouse"), quantities=st.lists(st.integers(0, 6), max_size=4))
        def split_batch(self, data, sender, quantities):
            stored = [lot for lot in self.lots if lot.state is LotState.STORED and not lot.recalled]
            lot = data.draw(st.sampled_from(stored or self.lots))
            parcels = [(fresh_parcel(), q) for q in quantities]
            batch = SplitBatch.of(lot.id, lot.seq, len(lot.parcels), parcels) if parcels else None

            def predict():
                self.role_check(Step.SPLIT, sender)
                check_split_batch(
                    state=lot.state, recalled=lot.recalled, subject="lot", received=lot.received, split=lot.split,
                    quantities=quantities, disposed=lot.destroyed + lot.returned,
                )  # fmt: skip

            def apply():
                assert batch is not None
                for position, (parcel, quantity) in enumerate(batch.parcels):
                    lot.parcels.append(
                        ModelParcel(parcel, batch.first_index + position, quantity, registered=False, batch=batch,
                                    position=position)
                    )  # fmt: skip
                lot.split += batch.quantity
                lot.seq += len(quantities)

            # An empty batch has no tree: it is sent with a made-up root (the chain refuses it all the same).
            call = batch.call(registry) if batch else fns.splitParcels(lot.id, lot.seq, fresh_hash(), 0, [])
            self.agree(predict, call, sender, apply)

        @precondition(lambda self: any(p.batch for lot in self.lots for p in lot.parcels))
        @rule(data=st.data())
        def register(self, data):
            parcel = data.draw(st.sampled_from([p for lot in self.lots for p in lot.parcels if p.batch]))
            batch = parcel.batch
            assert batch is not None

            def predict():
                check_registration(
                    registered=parcel.registered, subject="parcel", first_index=batch.first_index,
                    count=len(batch.parcels), index=parcel.index, quantity=parcel.quantity,
                )  # fmt: skip

            def apply():
                parcel.registered = True

            self.agree(predict, batch.register_call(registry, parcel.position), "outsider", apply)

        @precondition(lambda self: any(lot.parcels for lot in self.lots))
        @rule(data=st.data(), sender=senders("enterprise", "payment", "carrier"), kind=st.sampled_from(DOCUMENT_STEPS))
        def attach(self, data, sender, kind):
            lot = data.draw(st.sampled_from([lot for lot in self.lots if lot.parcels]))
            parcel = data.draw(st.sampled_from(lot.parcels))

            def predict():
                self.role_check(kind, sender)
                check_parcel_record(registered=parcel.registered, subject="parcel")
                if kind is Step.ORDER and getattr(accounts, sender) != lot.enterprise:
                    raise PermissionDenied(sender, "enterprise", "the lot's own enterprise")
                check_document(parcel_state=parcel.state, subject="parcel", step=kind, present=parcel.documents)

            def apply():
                parcel.documents.add(kind.value)
                lot.seq += 1

            call = fns.attachDocument(parcel.id, lot.seq, DOCUMENT_STEPS.index(kind), fresh_hash(), fresh_hash())
            self.agree(predict, call, sender, apply)

        @precondition(lambda self: any(lot.parcels for lot in self.lots))
        @rule(data=st.data(), sender=senders("customs"))
        def release(self, data, sender):
            lot = data.draw(st.sampled_from([lot for lot in self.lots if lot.parcels]))
            parcel = data.draw(st.sampled_from(lot.parcels))

            def predict():
                self.role_check(Step.RELEASE, sender)
                check_parcel_record(registered=parcel.registered, subject="parcel")
                check_release(
                    parcel_state=parcel.state, recalled=lot.recalled, subject="parcel", present=parcel.documents,
                    received=lot.received, released=lot.released, quantity=parcel.quantity, lot="lot",
                )  # fmt: skip

            def apply():
                parcel.state = ParcelState.RELEASED
                lot.released += parcel.quantity
                lot.seq += 1

            self.agree(predict, fns.releaseParcel(parcel.id, lot.seq, fresh_hash()), sender, apply)

        @precondition(lambda self: any(lot.parcels for lot in self.lots))
        @rule(data=st.data(), sender=senders("customs"), extra=st.integers(-1, 2))
        def release_by_manifest(self, data, sender, extra):
            lot = data.draw(st.sampled_from([lot for lot in self.lots if lot.parcels]))
            indices = set(data.draw(st.lists(st.integers(0, len(lot.parcels)), max_size=4)))
            quantity = sum(lot.parcels[i].quantity for i in indices if i < len(lot.parcels)) + extra
            released = {p.index for p in lot.parcels if p.state is not ParcelState.SPLIT}

            def predict():
                self.role_check(Step.MANIFEST_RELEASE, sender)
                check_manifest_lot(
                    state=lot.state, recalled=lot.recalled, subject="lot", indices=indices,
                    released_indices=released, parcel_count=len(lot.parcels), quantity=max(quantity, 0),
                    split=lot.split, released=lot.released,
                )  # fmt: skip

            def apply():
                for i in indices:
                    lot.parcels[i].state = ParcelState.RELEASED
                lot.released += quantity
                lot.seq += 1

            word = sum(1 << i for i in indices)
            entry = (lot.id, lot.seq, max(quantity, 0), 0, [word], fresh_hash())
            self.agree(predict, fns.releaseManifest(fresh_hash(), [entry]), sender, apply)

        @precondition(lambda self: any(p.state is ParcelState.RELEASED for lot in self.lots for p in lot.parcels))
        @rule(data=st.data(), sender=senders("carrier"))
        def deliver(self, data, sender):
            lot = data.draw(st.sampled_from([lot for lot in self.lots if lot.parcels]))
            parcel = data.draw(st.sampled_from(lot.parcels))

            def predict():
                self.role_check(Step.DELIVERY, sender)
                check_parcel_record(registered=parcel.registered, subject="parcel")
                check_delivery(parcel_state=parcel.state, subject="parcel")

            def apply():
                parcel.state = ParcelState.DELIVERED
                lot.seq += 1

            self.agree(predict, fns.recordDelivery(parcel.id, lot.seq, fresh_hash()), sender, apply)

        @precondition(lambda self: self.lots)
        @rule(data=st.data(), sender=senders("customs"), kind=st.sampled_from(list(Disposal)), q=st.integers(0, 30))
        def dispose(self, data, sender, kind, q):
            lot = data.draw(st.sampled_from(self.lots))
            after: list[LotState] = []

            def predict():
                self.role_check(Step.RETURN if kind is Disposal.RETURNED else Step.DESTRUCTION, sender)
                after.append(
                    check_disposal(
                        state=lot.state, subject="lot", kind=kind, quantity=q, received=lot.received,
                        split=lot.split, destroyed=lot.destroyed, returned=lot.returned,
                    )
                )  # fmt: skip

            def apply():
                lot.state = after[0]
                if kind is Disposal.RETURNED:
                    lot.returned += q
                else:
                    lot.destroyed += q
                lot.seq += 1

            call = fns.recordDisposal(lot.id, lot.seq, list(Disposal).index(kind), q, fresh_hash())
            self.agree(predict, call, sender, apply)

        @precondition(lambda self: self.lots and not any(lot.recalled for lot in self.lots))
        @rule(data=st.data(), sender=senders("enterprise", "customs"))
        def recall(self, data, sender):
            """At most one recall per run: a recalled lot stops most steps, so runs go deeper without many."""
            lot = data.draw(st.sampled_from(self.lots))

            def predict():
                self.role_check(Step.RECALL, sender)
                if _role(sender) == "enterprise" and getattr(accounts, sender) != lot.enterprise:
                    raise PermissionDenied(sender, "enterprise", "the lot's own enterprise")
                check_recall(recalled=lot.recalled, subject="lot")

            def apply():
                lot.recalled = True
                lot.seq += 1

            self.agree(predict, fns.recall(lot.id, lot.seq, fresh_hash()), sender, apply)

        @precondition(lambda self: self.lots)
        @rule(data=st.data(), sender=senders("warehouse", "carrier"))
        def observe(self, data, sender):
            lot = data.draw(st.sampled_from(self.lots))

            def apply():
                lot.seq += 1

            call = fns.recordObservation(lot.id, lot.seq, b"\0" * 32, fresh_hash())
            self.agree(lambda: self.role_check(Step.OBSERVATION, sender), call, sender, apply)

        # -- invariants ---------------------------------------------------------------------------------------

        @invariant()
        def chain_matches_model_and_conserves(self):
            for lot in self.lots:
                declared, received, split, released, destroyed, returned, remaining, _ = fns.getLedger(lot.id).call()
                assert ledger_conserved(
                    received=received, split=split, released=released, destroyed=destroyed, returned=returned
                )
                assert released + destroyed + returned + remaining == received
                assert (declared, received, split, released, destroyed, returned) == (
                    lot.declared, lot.received, lot.split, lot.released, lot.destroyed, lot.returned,
                )  # fmt: skip
                record = fns.getLot(lot.id).call()
                assert (record[0], record[1], record[7]) == (_LOT_STATES[lot.state.value], lot.recalled, lot.seq)
                for parcel in lot.parcels:
                    expected = _PARCEL_STATES[parcel.state.value] if parcel.registered else PARCEL_STATE["None"]
                    assert fns.getParcel(parcel.id).call()[1] == expected

    run_state_machine_as_test(
        RegistryModel,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
