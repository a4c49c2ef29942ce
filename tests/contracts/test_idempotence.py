"""Re-sent events are recognised from the hash chain alone (no storage slot per event); observations."""

from __future__ import annotations

from registry_support import STEP, fresh_hash, fresh_lot, next_head, role_id

HEAD = 9


def _observe(registry, driver, accounts, lot, subject=b"\0" * 32, event_hash=None, sender=None):
    fn = registry.functions.recordObservation(lot, driver.next_seq(lot), subject, event_hash or fresh_hash())
    return driver.send(fn, sender or accounts.warehouse)


def test_recorded_tail_is_recognised_from_the_prior_head(registry, driver, accounts):
    lot = fresh_lot()
    driver.declare(lot)
    prior = registry.functions.getLot(lot).call()[HEAD]
    hashes = [fresh_hash(), fresh_hash()]
    for event_hash in hashes:
        _observe(registry, driver, accounts, lot, event_hash=event_hash)
    assert registry.functions.isRecorded(lot, 1, prior, hashes).call()


def test_event_followed_by_later_events_is_recognised_with_their_hashes(registry, driver, accounts):
    lot = fresh_lot()
    driver.declare(lot)
    prior = registry.functions.getLot(lot).call()[HEAD]
    hashes = [fresh_hash() for _ in range(3)]
    for event_hash in hashes:
        _observe(registry, driver, accounts, lot, event_hash=event_hash)
    assert registry.functions.isRecorded(lot, 1, prior, hashes).call()
    assert not registry.functions.isRecorded(lot, 1, prior, hashes[:1]).call()


def test_event_with_another_hash_at_a_recorded_sequence_is_not_recognised(registry, driver, accounts):
    lot = fresh_lot()
    driver.declare(lot)
    prior = registry.functions.getLot(lot).call()[HEAD]
    _observe(registry, driver, accounts, lot)
    assert not registry.functions.isRecorded(lot, 1, prior, [fresh_hash()]).call()


def test_unknown_lot_records_nothing(registry):
    assert not registry.functions.isRecorded(fresh_lot(), 0, b"\0" * 32, [fresh_hash()]).call()


def test_declaration_is_recognised_from_a_zero_prior_head(registry, driver, accounts):
    lot, event_hash = fresh_lot(), fresh_hash()
    registry.functions.declareLot(lot, 5, event_hash).transact({"from": accounts.enterprise})
    assert registry.functions.isRecorded(lot, 0, b"\0" * 32, [event_hash]).call()


def test_observation_extends_the_chain_without_changing_the_state(registry, driver, accounts):
    lot = driver.stored_lot()
    before = registry.functions.getLot(lot).call()
    event_hash = fresh_hash()
    (event,) = registry.events.EventRecorded().process_receipt(
        _observe(registry, driver, accounts, lot, event_hash=event_hash)
    )
    after = registry.functions.getLot(lot).call()
    assert (event.args.step, event.args.subject) == (STEP["Observed"], lot)
    assert after[0] == before[0]
    assert after[HEAD] == next_head(before[HEAD], event_hash)


def test_observation_of_a_parcel_names_the_parcel(registry, driver, accounts):
    lot, parcel = driver.split_parcel()
    (event,) = registry.events.EventRecorded().process_receipt(
        _observe(registry, driver, accounts, lot, subject=parcel, sender=accounts.carrier)
    )
    assert event.args.subject == parcel


def test_observation_of_another_lots_parcel_is_rejected(registry, driver, accounts, expect_revert):
    _, parcel = driver.split_parcel()
    lot = driver.stored_lot()
    with expect_revert("TraceRegistryParcelNotInLot", parcel, lot):
        _observe(registry, driver, accounts, lot, subject=parcel)


def test_observation_requires_an_observer_role(registry, driver, accounts, expect_revert):
    lot = fresh_lot()
    driver.declare(lot)
    with expect_revert("AccessControlUnauthorizedAccount", accounts.payment, role_id("warehouse")):
        _observe(registry, driver, accounts, lot, sender=accounts.payment)
