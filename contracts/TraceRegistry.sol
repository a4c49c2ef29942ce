// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

import {ITraceRegistry} from "./ITraceRegistry.sol";

/**
 * @title TraceRegistry
 * @notice Registry v1 of bonded-import goods lots: enforces the journey's state machine and quantity ledger
 * (declared, received, split, released), keeps one hash chain per lot and records every step as an
 * {EventRecorded} log authored by the account that sent it.
 *
 * Roles: the platform admin holds DEFAULT_ADMIN_ROLE (pause, role admin of CUSTOMS_ADMIN_ROLE and of the
 * business roles); the customs admin holds CUSTOMS_ADMIN_ROLE and is the only role admin of CUSTOMS_ROLE.
 */
contract TraceRegistry is ITraceRegistry, AccessControl, Pausable {
    /// @notice Enterprises declare lots, attach orders and recall their own lots.
    bytes32 public constant ENTERPRISE_ROLE = keccak256("enterprise");
    /// @notice Bonded warehouses record entry counts, storage and splits.
    bytes32 public constant WAREHOUSE_ROLE = keccak256("warehouse");
    /// @notice Customs records inspections, releases parcels and may recall any lot.
    bytes32 public constant CUSTOMS_ROLE = keccak256("customs");
    /// @notice Carriers attach waybills and record deliveries.
    bytes32 public constant CARRIER_ROLE = keccak256("carrier");
    /// @notice Payment institutions attach payment records.
    bytes32 public constant PAYMENT_ROLE = keccak256("payment");
    /// @notice The role admin of CUSTOMS_ROLE.
    bytes32 public constant CUSTOMS_ADMIN_ROLE = keccak256("customs_admin");

    uint8 private constant _ALL_DOCUMENTS = 0x07;

    /// @dev A lot in three storage slots. `lastSeq` is the sequence number of the lot's latest event (the
    /// declaration is 0), so declaring writes only the first slot and the head; nextSeq = lastSeq + 1.
    struct LotRecord {
        // slot 0: 1 + 1 + 20 + 8 bytes
        LotState state;
        bool recalled;
        address enterprise;
        uint64 declaredQuantity;
        // slot 1: 8 + 8 + 8 + 4 + 4 bytes
        uint64 receivedQuantity;
        uint64 splitQuantity;
        uint64 releasedQuantity;
        uint32 lastSeq;
        uint32 parcelCount;
        // slot 2
        bytes32 head;
    }

    /// @dev A parcel in one storage slot: the lot is referenced by the first 12 bytes of its id, resolved
    /// through `_lotIds`. Splitting then writes one new slot instead of two (the split step stays under
    /// 80k gas); a 96-bit prefix cannot be made to collide with another party's lot id in practice, and
    /// `declareLot` refuses a lot whose prefix is taken.
    struct ParcelRecord {
        bytes12 lotRef;
        ParcelState state;
        uint32 index;
        uint64 quantity;
        uint8 documents;
    }

    mapping(bytes32 lotId => LotRecord) private _lots;
    mapping(bytes12 lotRef => bytes32 lotId) private _lotIds;
    mapping(bytes32 parcelId => ParcelRecord) private _parcels;
    mapping(bytes32 parcelId => mapping(DocumentKind kind => bytes32 commitment)) private _documents;

    /// @param admin The platform admin (DEFAULT_ADMIN_ROLE).
    /// @param customsAdmin The customs admin (CUSTOMS_ADMIN_ROLE), the only grantor of CUSTOMS_ROLE.
    constructor(address admin, address customsAdmin) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(CUSTOMS_ADMIN_ROLE, customsAdmin);
        _setRoleAdmin(CUSTOMS_ADMIN_ROLE, DEFAULT_ADMIN_ROLE);
        _setRoleAdmin(CUSTOMS_ROLE, CUSTOMS_ADMIN_ROLE);
    }

    /// @inheritdoc ITraceRegistry
    function declareLot(
        bytes32 lotId,
        uint64 declaredQuantity,
        bytes32 eventHash
    ) external whenNotPaused onlyRole(ENTERPRISE_ROLE) {
        LotRecord storage lot = _lots[lotId];
        bytes12 ref = bytes12(lotId);
        if (lot.state != LotState.None || _lotIds[ref] != bytes32(0)) revert TraceRegistryLotExists(lotId);
        if (declaredQuantity == 0) revert TraceRegistryZeroQuantity(lotId);

        lot.state = LotState.Declared;
        lot.enterprise = msg.sender;
        lot.declaredQuantity = declaredQuantity;
        _lotIds[ref] = lotId;
        bytes32 head = keccak256(abi.encodePacked(bytes32(0), eventHash));
        lot.head = head;
        emit EventRecorded(lotId, 0, msg.sender, Step.Declared, lotId, eventHash, head);
    }

    /// @inheritdoc ITraceRegistry
    function recordEntry(
        bytes32 lotId,
        uint64 seq,
        uint64 countedQuantity,
        bytes32 eventHash
    ) external whenNotPaused onlyRole(WAREHOUSE_ROLE) {
        LotRecord storage lot = _existingLot(lotId);
        _checkSeq(lotId, lot, seq);
        _checkLotState(lotId, lot, LotState.Declared, Step.Entered);
        if (countedQuantity == 0) revert TraceRegistryZeroQuantity(lotId);

        lot.state = LotState.Entered;
        lot.receivedQuantity = countedQuantity;
        _append(lotId, lot, seq, Step.Entered, lotId, eventHash);
    }

    /// @inheritdoc ITraceRegistry
    function recordInspection(
        bytes32 lotId,
        uint64 seq,
        InspectionResult result,
        bytes32 eventHash
    ) external whenNotPaused onlyRole(CUSTOMS_ROLE) {
        LotRecord storage lot = _existingLot(lotId);
        _checkSeq(lotId, lot, seq);
        _checkLotState(lotId, lot, LotState.Entered, Step.Inspected);

        lot.state = result == InspectionResult.NonConformant ? LotState.Held : LotState.Cleared;
        _append(lotId, lot, seq, Step.Inspected, lotId, eventHash);
    }

    /// @inheritdoc ITraceRegistry
    function recordStorage(
        bytes32 lotId,
        uint64 seq,
        bytes32 eventHash
    ) external whenNotPaused onlyRole(WAREHOUSE_ROLE) {
        LotRecord storage lot = _existingLot(lotId);
        _checkSeq(lotId, lot, seq);
        _checkLotState(lotId, lot, LotState.Cleared, Step.Stored);

        lot.state = LotState.Stored;
        _append(lotId, lot, seq, Step.Stored, lotId, eventHash);
    }

    /// @inheritdoc ITraceRegistry
    function splitParcel(
        bytes32 lotId,
        uint64 seq,
        bytes32 parcelId,
        uint64 quantity,
        bytes32 eventHash
    ) external whenNotPaused onlyRole(WAREHOUSE_ROLE) {
        LotRecord storage lot = _existingLot(lotId);
        _checkSeq(lotId, lot, seq);
        _checkLotState(lotId, lot, LotState.Stored, Step.Split);
        if (lot.recalled) revert TraceRegistryLotRecalled(lotId);
        ParcelRecord storage parcel = _parcels[parcelId];
        if (parcel.state != ParcelState.None) revert TraceRegistryParcelExists(parcelId);
        if (quantity == 0) revert TraceRegistryZeroQuantity(parcelId);
        uint64 available = lot.receivedQuantity - lot.splitQuantity;
        if (quantity > available) revert TraceRegistryOverSplit(lotId, quantity, available);

        uint32 index = lot.parcelCount;
        lot.parcelCount = index + 1;
        lot.splitQuantity += quantity;
        parcel.lotRef = bytes12(lotId);
        parcel.state = ParcelState.Split;
        parcel.index = index;
        parcel.quantity = quantity;
        _append(lotId, lot, seq, Step.Split, parcelId, eventHash);
    }

    /// @inheritdoc ITraceRegistry
    function attachDocument(
        bytes32 parcelId,
        uint64 seq,
        DocumentKind kind,
        bytes32 commitment,
        bytes32 eventHash
    ) external whenNotPaused {
        _checkRole(_documentRole(kind));
        ParcelRecord storage parcel = _existingParcel(parcelId);
        bytes32 lotId = _lotIds[parcel.lotRef];
        LotRecord storage lot = _lots[lotId];
        if (kind == DocumentKind.Order && lot.enterprise != msg.sender) {
            revert TraceRegistryNotLotEnterprise(lotId, msg.sender);
        }
        _checkSeq(lotId, lot, seq);
        _checkParcelState(parcelId, parcel, ParcelState.Split, Step.DocumentAttached);
        uint8 bit = uint8(1) << uint8(kind);
        if (parcel.documents & bit != 0) revert TraceRegistryDocumentExists(parcelId, kind);

        parcel.documents |= bit;
        _documents[parcelId][kind] = commitment;
        _append(lotId, lot, seq, Step.DocumentAttached, parcelId, eventHash);
    }

    /// @inheritdoc ITraceRegistry
    function releaseParcel(
        bytes32 parcelId,
        uint64 seq,
        bytes32 eventHash
    ) external whenNotPaused onlyRole(CUSTOMS_ROLE) {
        ParcelRecord storage parcel = _existingParcel(parcelId);
        bytes32 lotId = _lotIds[parcel.lotRef];
        LotRecord storage lot = _lots[lotId];
        _checkSeq(lotId, lot, seq);
        _checkParcelState(parcelId, parcel, ParcelState.Split, Step.Released);
        if (lot.recalled) revert TraceRegistryLotRecalled(lotId);
        if (parcel.documents != _ALL_DOCUMENTS) revert TraceRegistryMissingDocuments(parcelId, parcel.documents);
        uint64 quantity = parcel.quantity;
        // Cannot fail while splits conserve quantity; kept so the write-off never relies on that alone.
        uint64 available = lot.receivedQuantity - lot.releasedQuantity;
        if (quantity > available) revert TraceRegistryOverRelease(lotId, quantity, available);

        lot.releasedQuantity += quantity;
        parcel.state = ParcelState.Released;
        _append(lotId, lot, seq, Step.Released, parcelId, eventHash);
    }

    /// @inheritdoc ITraceRegistry
    function recordDelivery(
        bytes32 parcelId,
        uint64 seq,
        bytes32 eventHash
    ) external whenNotPaused onlyRole(CARRIER_ROLE) {
        ParcelRecord storage parcel = _existingParcel(parcelId);
        bytes32 lotId = _lotIds[parcel.lotRef];
        LotRecord storage lot = _lots[lotId];
        _checkSeq(lotId, lot, seq);
        _checkParcelState(parcelId, parcel, ParcelState.Released, Step.Delivered);

        parcel.state = ParcelState.Delivered;
        _append(lotId, lot, seq, Step.Delivered, parcelId, eventHash);
    }

    /// @inheritdoc ITraceRegistry
    function recall(bytes32 lotId, uint64 seq, bytes32 eventHash) external whenNotPaused {
        bool byCustoms = hasRole(CUSTOMS_ROLE, msg.sender);
        if (!byCustoms) _checkRole(ENTERPRISE_ROLE);
        LotRecord storage lot = _existingLot(lotId);
        if (!byCustoms && lot.enterprise != msg.sender) revert TraceRegistryNotLotEnterprise(lotId, msg.sender);
        _checkSeq(lotId, lot, seq);
        if (lot.recalled) revert TraceRegistryLotRecalled(lotId);

        lot.recalled = true;
        _append(lotId, lot, seq, Step.Recalled, lotId, eventHash);
    }

    /// @inheritdoc ITraceRegistry
    function pause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _pause();
    }

    /// @inheritdoc ITraceRegistry
    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) {
        _unpause();
    }

    /// @inheritdoc ITraceRegistry
    function getLot(bytes32 lotId) external view returns (Lot memory) {
        LotRecord storage lot = _lots[lotId];
        return
            Lot({
                state: lot.state,
                recalled: lot.recalled,
                enterprise: lot.enterprise,
                declaredQuantity: lot.declaredQuantity,
                receivedQuantity: lot.receivedQuantity,
                splitQuantity: lot.splitQuantity,
                releasedQuantity: lot.releasedQuantity,
                nextSeq: lot.state == LotState.None ? 0 : uint64(lot.lastSeq) + 1,
                parcelCount: lot.parcelCount,
                head: lot.head
            });
    }

    /// @inheritdoc ITraceRegistry
    function getParcel(bytes32 parcelId) external view returns (Parcel memory) {
        ParcelRecord storage parcel = _parcels[parcelId];
        return
            Parcel({
                lotId: parcel.state == ParcelState.None ? bytes32(0) : _lotIds[parcel.lotRef],
                state: parcel.state,
                index: parcel.index,
                quantity: parcel.quantity,
                documents: parcel.documents
            });
    }

    /// @inheritdoc ITraceRegistry
    function isRecalled(bytes32 id) external view returns (bool) {
        LotRecord storage lot = _lots[id];
        if (lot.state != LotState.None) return lot.recalled;
        ParcelRecord storage parcel = _parcels[id];
        if (parcel.state == ParcelState.None) return false;
        return _lots[_lotIds[parcel.lotRef]].recalled;
    }

    /// @inheritdoc ITraceRegistry
    function getDocument(bytes32 parcelId, DocumentKind kind) external view returns (bytes32) {
        return _documents[parcelId][kind];
    }

    /// @notice ERC-165: ITraceRegistry and IAccessControl.
    function supportsInterface(bytes4 interfaceId) public view override returns (bool) {
        return interfaceId == type(ITraceRegistry).interfaceId || super.supportsInterface(interfaceId);
    }

    /// @dev Moves the lot's chain one event on: next sequence number, new head, the log.
    function _append(
        bytes32 lotId,
        LotRecord storage lot,
        uint64 seq,
        Step step,
        bytes32 subject,
        bytes32 eventHash
    ) private {
        lot.lastSeq += 1;
        bytes32 head = keccak256(abi.encodePacked(lot.head, eventHash));
        lot.head = head;
        emit EventRecorded(lotId, seq, msg.sender, step, subject, eventHash, head);
    }

    function _existingLot(bytes32 lotId) private view returns (LotRecord storage lot) {
        lot = _lots[lotId];
        if (lot.state == LotState.None) revert TraceRegistryUnknownLot(lotId);
    }

    function _existingParcel(bytes32 parcelId) private view returns (ParcelRecord storage parcel) {
        parcel = _parcels[parcelId];
        if (parcel.state == ParcelState.None) revert TraceRegistryUnknownParcel(parcelId);
    }

    function _checkSeq(bytes32 lotId, LotRecord storage lot, uint64 seq) private view {
        uint64 expected = uint64(lot.lastSeq) + 1;
        if (seq != expected) revert TraceRegistrySequenceMismatch(lotId, expected, seq);
    }

    function _checkLotState(bytes32 lotId, LotRecord storage lot, LotState expected, Step step) private view {
        LotState state = lot.state;
        if (state != expected) revert TraceRegistryStepOutOfOrder(lotId, step, uint8(state));
    }

    function _checkParcelState(
        bytes32 parcelId,
        ParcelRecord storage parcel,
        ParcelState expected,
        Step step
    ) private view {
        ParcelState state = parcel.state;
        if (state != expected) revert TraceRegistryStepOutOfOrder(parcelId, step, uint8(state));
    }

    function _documentRole(DocumentKind kind) private pure returns (bytes32) {
        if (kind == DocumentKind.Order) return ENTERPRISE_ROLE;
        if (kind == DocumentKind.Payment) return PAYMENT_ROLE;
        return CARRIER_ROLE;
    }
}
