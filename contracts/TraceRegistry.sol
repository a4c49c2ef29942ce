// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";

import {ITraceRegistry} from "./ITraceRegistry.sol";

/**
 * @title TraceRegistry
 * @notice Registry v3 of bonded-import goods lots: enforces the journey's state machine and quantity ledger
 * (declared, received, split, released, destroyed, returned), keeps one hash chain per lot and records every
 * step as an {EventRecorded} log authored by the account that sent it, or that signed it (EIP-712 batches
 * relayed by any account), releases parcels by manifests (bitmaps and a Merkle root of release records) and
 * clears low-risk lots by rule.
 *
 * Roles: the platform admin holds DEFAULT_ADMIN_ROLE (pause, role admin of CUSTOMS_ADMIN_ROLE and of the
 * business roles); the customs admin holds CUSTOMS_ADMIN_ROLE and is the only role admin of CUSTOMS_ROLE.
 */
contract TraceRegistry is ITraceRegistry, AccessControl, Pausable, EIP712 {
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

    /// @notice EIP-712 type hash of `Op`.
    bytes32 public constant OP_TYPEHASH =
        keccak256("Op(uint8 action,bytes32 subject,uint64 amount,bytes32 data,bytes32 eventHash)");
    /// @notice EIP-712 type hash of `LotOps`.
    bytes32 public constant LOT_OPS_TYPEHASH =
        keccak256(
            "LotOps(bytes32 lotId,uint64 seq,Op[] ops)Op(uint8 action,bytes32 subject,uint64 amount,bytes32 data,"
            "bytes32 eventHash)"
        );
    /// @notice EIP-712 type hash of `Batch`, the primary type a signer signs.
    bytes32 public constant BATCH_TYPEHASH =
        keccak256(
            "Batch(address signer,uint64 deadline,LotOps[] lots)LotOps(bytes32 lotId,uint64 seq,Op[] ops)"
            "Op(uint8 action,bytes32 subject,uint64 amount,bytes32 data,bytes32 eventHash)"
        );

    uint8 private constant _ALL_DOCUMENTS = 0x07;

    /// @dev A lot in four storage slots. `lastSeq` is the sequence number of the lot's latest event (the
    /// declaration is 0), so declaring writes only the first slot and the head; nextSeq = lastSeq + 1.
    /// The fourth slot (disposals) is written only when goods are returned or destroyed.
    struct LotRecord {
        // slot 0: 1 + 1 + 20 + 8 + 1 bytes
        LotState state;
        bool recalled;
        address enterprise;
        uint64 declaredQuantity;
        uint8 riskRange;
        // slot 1: 8 + 8 + 8 + 4 + 4 bytes
        uint64 receivedQuantity;
        uint64 splitQuantity;
        uint64 releasedQuantity;
        uint32 lastSeq;
        uint32 parcelCount;
        // slot 2
        bytes32 head;
        // slot 3
        uint64 destroyedQuantity;
        uint64 returnedQuantity;
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

    /// @dev What the groups of one signed batch share: the signer, whether its observer role was checked (once
    /// per batch), and the next list of `splitHashes` (SplitBatch ops consume them in batch order).
    struct SignedRun {
        address signer;
        bool observer;
        uint256 nextList;
    }

    mapping(bytes32 lotId => LotRecord) private _lots;
    mapping(bytes12 lotRef => bytes32 lotId) private _lotIds;
    mapping(bytes32 parcelId => ParcelRecord) private _parcels;
    mapping(bytes32 parcelId => mapping(DocumentKind kind => bytes32 commitment)) private _documents;
    mapping(bytes32 lotId => mapping(uint256 word => uint256 bits)) private _releasedBits;
    mapping(bytes32 root => uint256 blockNumber) private _manifests;
    mapping(address enterprise => uint8 level) private _creditLevels;
    mapping(uint8 rangeId => LowRiskRange) private _lowRiskRanges;
    uint8 private _rangeCount;
    /// @dev The root of each split batch, keyed by `_splitKey(firstIndex, count)`: the key binds the index range
    /// that {registerParcel} enforces, the value is the one slot a batch writes.
    mapping(bytes32 lotId => mapping(uint256 range => bytes32 root)) private _splitRoots;

    /// @param admin The platform admin (DEFAULT_ADMIN_ROLE).
    /// @param customsAdmin The customs admin (CUSTOMS_ADMIN_ROLE), the only grantor of CUSTOMS_ROLE.
    constructor(address admin, address customsAdmin) EIP712("TraceRegistry", "3") {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(CUSTOMS_ADMIN_ROLE, customsAdmin);
        _setRoleAdmin(CUSTOMS_ADMIN_ROLE, DEFAULT_ADMIN_ROLE);
        _setRoleAdmin(CUSTOMS_ROLE, CUSTOMS_ADMIN_ROLE);
    }

    /// @inheritdoc ITraceRegistry
    function declareLot(bytes32 lotId, uint64 declaredQuantity, bytes32 eventHash) external whenNotPaused {
        _declare(msg.sender, lotId, declaredQuantity, eventHash);
    }

    /// @inheritdoc ITraceRegistry
    function recordEntry(
        bytes32 lotId,
        uint64 seq,
        uint64 countedQuantity,
        bytes32 eventHash
    ) external whenNotPaused {
        _entry(msg.sender, lotId, seq, countedQuantity, eventHash);
    }

    /// @inheritdoc ITraceRegistry
    function recordInspection(
        bytes32 lotId,
        uint64 seq,
        InspectionResult result,
        bytes32 eventHash
    ) external whenNotPaused {
        _inspection(msg.sender, lotId, seq, result, eventHash);
    }

    /// @inheritdoc ITraceRegistry
    function recordStorage(bytes32 lotId, uint64 seq, bytes32 eventHash) external whenNotPaused {
        _storage(msg.sender, lotId, seq, eventHash);
    }

    /// @inheritdoc ITraceRegistry
    function splitParcel(
        bytes32 lotId,
        uint64 seq,
        bytes32 parcelId,
        uint64 quantity,
        bytes32 eventHash
    ) external whenNotPaused {
        _split(msg.sender, lotId, seq, parcelId, quantity, eventHash);
    }

    /// @inheritdoc ITraceRegistry
    function splitParcels(
        bytes32 lotId,
        uint64 firstSeq,
        bytes32 parcelsRoot,
        uint64 quantity,
        bytes32[] calldata eventHashes
    ) external whenNotPaused {
        _splitBatch(msg.sender, lotId, firstSeq, parcelsRoot, quantity, eventHashes);
    }

    /// @inheritdoc ITraceRegistry
    function registerParcel(
        bytes32 lotId,
        uint32 firstIndex,
        uint32 count,
        bytes32 parcelId,
        uint32 index,
        uint64 quantity,
        bytes32[] calldata proof
    ) external whenNotPaused {
        bytes32 root = _splitRoots[lotId][_splitKey(firstIndex, count)];
        if (root == bytes32(0)) revert TraceRegistryUnknownSplit(lotId, firstIndex, count);
        if (index < firstIndex || !(index - firstIndex < count)) {
            revert TraceRegistryIndexOutOfSplit(lotId, index, firstIndex, count);
        }
        ParcelRecord storage parcel = _parcels[parcelId];
        if (parcel.state != ParcelState.None) revert TraceRegistryParcelExists(parcelId);
        if (quantity == 0) revert TraceRegistryZeroQuantity(parcelId);
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(parcelId, index, quantity))));
        if (!MerkleProof.verifyCalldata(proof, root, leaf)) revert TraceRegistryInvalidProof(lotId, parcelId);

        // A parcel a manifest released already reads as Released through the lot's bitmap (see {_parcelState}).
        _writeParcel(parcel, lotId, index, quantity);
        emit ParcelRegistered(lotId, parcelId, index, quantity);
    }

    /// @inheritdoc ITraceRegistry
    function attachDocument(
        bytes32 parcelId,
        uint64 seq,
        DocumentKind kind,
        bytes32 commitment,
        bytes32 eventHash
    ) external whenNotPaused {
        _document(msg.sender, bytes32(0), parcelId, seq, kind, commitment, eventHash);
    }

    /// @inheritdoc ITraceRegistry
    function releaseParcel(bytes32 parcelId, uint64 seq, bytes32 eventHash) external whenNotPaused {
        _release(msg.sender, bytes32(0), parcelId, seq, eventHash);
    }

    /// @inheritdoc ITraceRegistry
    function recordDelivery(bytes32 parcelId, uint64 seq, bytes32 eventHash) external whenNotPaused {
        _delivery(msg.sender, bytes32(0), parcelId, seq, eventHash);
    }

    /// @inheritdoc ITraceRegistry
    function recall(bytes32 lotId, uint64 seq, bytes32 eventHash) external whenNotPaused {
        _recall(msg.sender, lotId, seq, eventHash);
    }

    /// @inheritdoc ITraceRegistry
    function recordSigned(
        Batch calldata batch,
        bytes calldata signature,
        bytes32[] calldata priorHeads,
        bytes32[][] calldata splitHashes
    ) external whenNotPaused returns (uint256 recorded) {
        if (block.timestamp > batch.deadline) revert TraceRegistrySignatureExpired(batch.deadline, block.timestamp);
        SignedRun memory run = SignedRun({signer: batch.signer, observer: false, nextList: 0});
        uint256 groups = batch.lots.length;
        bytes32[] memory groupHashes = new bytes32[](groups);
        // One pass hashes each group and applies it; the signature is checked after the pass and a bad one
        // reverts everything (no external call happens in between), which spares reading the calldata twice.
        for (uint256 g = 0; g < groups; ++g) {
            LotOps calldata group = batch.lots[g];
            groupHashes[g] = _hashLotOps(group);
            bool resent = g < priorHeads.length;
            bytes32 priorHead = resent ? priorHeads[g] : bytes32(0);
            uint256 events = _recordGroup(run, group, resent, priorHead, splitHashes);
            unchecked {
                recorded += events; // bounded by the calldata a transaction can carry
            }
        }
        address signer = run.signer;
        bytes32 structHash = keccak256(
            abi.encode(BATCH_TYPEHASH, signer, batch.deadline, keccak256(abi.encodePacked(groupHashes)))
        );
        // A malformed signature recovers to zero (its error code is not needed to refuse it).
        (address recovered, , ) = ECDSA.tryRecover(_hashTypedDataV4(structHash), signature);
        if (recovered != signer || signer == address(0)) revert TraceRegistryInvalidSignature(signer, recovered);
    }

    /// @inheritdoc ITraceRegistry
    function recordObservation(bytes32 lotId, uint64 seq, bytes32 subject, bytes32 eventHash) external whenNotPaused {
        _observe(msg.sender, lotId, seq, subject, eventHash);
    }

    /// @inheritdoc ITraceRegistry
    function declareLotClassified(
        bytes32 lotId,
        uint64 declaredQuantity,
        uint40 hsCode,
        uint8 rangeId,
        bytes32 eventHash
    ) external whenNotPaused {
        LowRiskRange storage range = _lowRiskRanges[rangeId];
        if (range.hsTo == 0 || hsCode < range.hsFrom || hsCode > range.hsTo) {
            revert TraceRegistryHsCodeOutOfRange(hsCode, rangeId);
        }
        _declare(msg.sender, lotId, declaredQuantity, eventHash);
        _lots[lotId].riskRange = rangeId;
        emit LotClassified(lotId, hsCode, rangeId);
    }

    /// @inheritdoc ITraceRegistry
    function clearByRule(bytes32 lotId, uint64 seq, bytes32 eventHash) external whenNotPaused {
        _checkRole(WAREHOUSE_ROLE);
        LotRecord storage lot = _existingLot(lotId);
        _checkSeq(lotId, lot, seq);
        _checkLotState(lotId, lot, LotState.Entered, Step.ClearedByRule);
        uint8 rangeId = lot.riskRange;
        LowRiskRange storage range = _lowRiskRanges[rangeId];
        if (rangeId == 0 || range.hsTo == 0) revert TraceRegistryNotLowRisk(lotId, rangeId);
        uint8 level = _creditLevels[lot.enterprise];
        if (level < range.minCreditLevel) revert TraceRegistryCreditTooLow(lot.enterprise, level, range.minCreditLevel);
        if (lot.receivedQuantity != lot.declaredQuantity) {
            revert TraceRegistryEntryDiscrepancy(lotId, lot.declaredQuantity, lot.receivedQuantity);
        }

        lot.state = LotState.Cleared;
        _append(msg.sender, lotId, lot, seq, Step.ClearedByRule, lotId, eventHash);
    }

    /// @inheritdoc ITraceRegistry
    function setCreditLevel(address enterprise, uint8 level) external whenNotPaused onlyRole(CUSTOMS_ROLE) {
        _creditLevels[enterprise] = level;
        emit CreditLevelSet(enterprise, level, msg.sender);
    }

    /// @inheritdoc ITraceRegistry
    function addLowRiskRange(
        uint40 hsFrom,
        uint40 hsTo,
        uint8 minCreditLevel
    ) external whenNotPaused onlyRole(CUSTOMS_ROLE) returns (uint8 rangeId) {
        if (hsTo == 0 || hsFrom > hsTo || minCreditLevel == 0) {
            revert TraceRegistryInvalidRange(hsFrom, hsTo, minCreditLevel);
        }
        if (_rangeCount == type(uint8).max) revert TraceRegistryTooManyRanges();

        rangeId = _rangeCount + 1;
        _rangeCount = rangeId;
        _lowRiskRanges[rangeId] = LowRiskRange({hsFrom: hsFrom, hsTo: hsTo, minCreditLevel: minCreditLevel});
        emit LowRiskRangeAdded(rangeId, hsFrom, hsTo, minCreditLevel, msg.sender);
    }

    /// @inheritdoc ITraceRegistry
    function revokeLowRiskRange(uint8 rangeId) external whenNotPaused onlyRole(CUSTOMS_ROLE) {
        if (_lowRiskRanges[rangeId].hsTo == 0) revert TraceRegistryNotLowRisk(bytes32(0), rangeId);

        delete _lowRiskRanges[rangeId];
        emit LowRiskRangeRevoked(rangeId, msg.sender);
    }

    /// @inheritdoc ITraceRegistry
    function recordDisposal(
        bytes32 lotId,
        uint64 seq,
        Disposal kind,
        uint64 quantity,
        bytes32 eventHash
    ) external whenNotPaused onlyRole(CUSTOMS_ROLE) {
        Step step = kind == Disposal.Returned ? Step.Returned : Step.Destroyed;
        LotRecord storage lot = _existingLot(lotId);
        _checkSeq(lotId, lot, seq);
        LotState state = lot.state;
        if (state != LotState.Held && state != LotState.Stored) {
            revert TraceRegistryStepOutOfOrder(lotId, step, uint8(state));
        }
        if (quantity == 0) revert TraceRegistryZeroQuantity(lotId);
        uint64 available = _unsplit(lot);
        if (quantity > available) revert TraceRegistryOverDisposal(lotId, quantity, available);

        if (kind == Disposal.Returned) lot.returnedQuantity += quantity;
        else lot.destroyedQuantity += quantity;
        if (state == LotState.Held && quantity == available) lot.state = LotState.Closed;
        _append(msg.sender, lotId, lot, seq, step, lotId, eventHash);
    }

    /// @inheritdoc ITraceRegistry
    function liftHold(bytes32 lotId, uint64 seq, bytes32 eventHash) external whenNotPaused onlyRole(CUSTOMS_ROLE) {
        LotRecord storage lot = _existingLot(lotId);
        _checkSeq(lotId, lot, seq);
        _checkLotState(lotId, lot, LotState.Held, Step.HoldLifted);

        lot.state = LotState.Cleared;
        _append(msg.sender, lotId, lot, seq, Step.HoldLifted, lotId, eventHash);
    }

    /// @inheritdoc ITraceRegistry
    function releaseManifest(
        bytes32 root,
        ManifestLot[] calldata lots
    ) external whenNotPaused onlyRole(CUSTOMS_ROLE) {
        if (root == bytes32(0) || _manifests[root] != 0) revert TraceRegistryManifestExists(root);
        _manifests[root] = block.number;
        uint256 count = lots.length;
        for (uint256 i = 0; i < count; ++i) {
            _releaseLotParcels(root, lots[i]);
        }
        emit ManifestRecorded(root, msg.sender, count);
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
                state: _parcelState(parcel),
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

    /// @inheritdoc ITraceRegistry
    function getLedger(bytes32 lotId) external view returns (Ledger memory) {
        LotRecord storage lot = _lots[lotId];
        uint64 received = lot.receivedQuantity;
        uint64 released = lot.releasedQuantity;
        return
            Ledger({
                declared: lot.declaredQuantity,
                received: received,
                split: lot.splitQuantity,
                released: released,
                destroyed: lot.destroyedQuantity,
                returned: lot.returnedQuantity,
                remaining: received - released - lot.destroyedQuantity - lot.returnedQuantity,
                riskRange: lot.riskRange
            });
    }

    /// @inheritdoc ITraceRegistry
    function releasedWord(bytes32 lotId, uint256 word) external view returns (uint256) {
        return _releasedBits[lotId][word];
    }

    /// @inheritdoc ITraceRegistry
    function manifestBlock(bytes32 root) external view returns (uint256) {
        return _manifests[root];
    }

    /// @inheritdoc ITraceRegistry
    function splitRoot(bytes32 lotId, uint32 firstIndex, uint32 count) external view returns (bytes32) {
        return _splitRoots[lotId][_splitKey(firstIndex, count)];
    }

    /// @inheritdoc ITraceRegistry
    function verifyRelease(
        bytes32 root,
        ReleaseRecord calldata record,
        bytes32[] calldata proof
    ) external view returns (bool) {
        if (_manifests[root] == 0) return false;
        ParcelRecord storage parcel = _parcels[record.parcelId];
        if (parcel.state == ParcelState.None || _lotIds[parcel.lotRef] != record.lotId) return false;
        if (parcel.index != record.index || parcel.quantity != record.quantity) return false;
        if (!_isReleasedBit(record.lotId, record.index)) return false;
        bytes32 leaf = keccak256(
            bytes.concat(
                keccak256(
                    abi.encode(
                        record.parcelId,
                        record.lotId,
                        record.index,
                        record.quantity,
                        record.order,
                        record.payment,
                        record.waybill
                    )
                )
            )
        );
        return MerkleProof.verifyCalldata(proof, root, leaf);
    }

    /// @inheritdoc ITraceRegistry
    function isRecorded(
        bytes32 lotId,
        uint64 seq,
        bytes32 priorHead,
        bytes32[] calldata eventHashes
    ) external view returns (bool) {
        LotRecord storage lot = _lots[lotId];
        if (lot.state == LotState.None || uint256(seq) + eventHashes.length != uint256(lot.lastSeq) + 1) return false;
        bytes32 head = priorHead;
        for (uint256 i = 0; i < eventHashes.length; ++i) {
            head = keccak256(abi.encodePacked(head, eventHashes[i]));
        }
        return eventHashes.length != 0 && head == lot.head;
    }

    /// @inheritdoc ITraceRegistry
    function creditLevel(address enterprise) external view returns (uint8) {
        return _creditLevels[enterprise];
    }

    /// @inheritdoc ITraceRegistry
    function lowRiskRange(uint8 rangeId) external view returns (LowRiskRange memory) {
        return _lowRiskRanges[rangeId];
    }

    /// @notice ERC-165: ITraceRegistry and IAccessControl.
    function supportsInterface(bytes4 interfaceId) public view override returns (bool) {
        return interfaceId == type(ITraceRegistry).interfaceId || super.supportsInterface(interfaceId);
    }

    /// @dev Declares a lot for `author` (sequence 0).
    function _declare(address author, bytes32 lotId, uint64 declaredQuantity, bytes32 eventHash) private {
        _checkRole(ENTERPRISE_ROLE, author);
        LotRecord storage lot = _lots[lotId];
        bytes12 ref = bytes12(lotId);
        if (lot.state != LotState.None || _lotIds[ref] != bytes32(0)) revert TraceRegistryLotExists(lotId);
        if (declaredQuantity == 0) revert TraceRegistryZeroQuantity(lotId);

        lot.state = LotState.Declared;
        lot.enterprise = author;
        lot.declaredQuantity = declaredQuantity;
        _lotIds[ref] = lotId;
        bytes32 head = keccak256(abi.encodePacked(bytes32(0), eventHash));
        lot.head = head;
        emit EventRecorded(lotId, 0, author, Step.Declared, lotId, eventHash, head);
    }

    function _entry(address author, bytes32 lotId, uint64 seq, uint64 countedQuantity, bytes32 eventHash) private {
        _checkRole(WAREHOUSE_ROLE, author);
        LotRecord storage lot = _existingLot(lotId);
        _checkSeq(lotId, lot, seq);
        _checkLotState(lotId, lot, LotState.Declared, Step.Entered);
        if (countedQuantity == 0) revert TraceRegistryZeroQuantity(lotId);

        lot.state = LotState.Entered;
        lot.receivedQuantity = countedQuantity;
        _append(author, lotId, lot, seq, Step.Entered, lotId, eventHash);
    }

    function _inspection(
        address author,
        bytes32 lotId,
        uint64 seq,
        InspectionResult result,
        bytes32 eventHash
    ) private {
        _checkRole(CUSTOMS_ROLE, author);
        LotRecord storage lot = _existingLot(lotId);
        _checkSeq(lotId, lot, seq);
        _checkLotState(lotId, lot, LotState.Entered, Step.Inspected);

        lot.state = result == InspectionResult.NonConformant ? LotState.Held : LotState.Cleared;
        _append(author, lotId, lot, seq, Step.Inspected, lotId, eventHash);
    }

    function _storage(address author, bytes32 lotId, uint64 seq, bytes32 eventHash) private {
        _checkRole(WAREHOUSE_ROLE, author);
        LotRecord storage lot = _existingLot(lotId);
        _checkSeq(lotId, lot, seq);
        _checkLotState(lotId, lot, LotState.Cleared, Step.Stored);

        lot.state = LotState.Stored;
        _append(author, lotId, lot, seq, Step.Stored, lotId, eventHash);
    }

    function _split(
        address author,
        bytes32 lotId,
        uint64 seq,
        bytes32 parcelId,
        uint64 quantity,
        bytes32 eventHash
    ) private {
        LotRecord storage lot = _splittableLot(author, lotId, seq);
        ParcelRecord storage parcel = _parcels[parcelId];
        if (parcel.state != ParcelState.None) revert TraceRegistryParcelExists(parcelId);
        if (quantity == 0) revert TraceRegistryZeroQuantity(parcelId);
        _checkSplitQuantity(lotId, lot, quantity);

        uint32 index = lot.parcelCount;
        lot.parcelCount = index + 1;
        lot.splitQuantity += quantity;
        _writeParcel(parcel, lotId, index, quantity);
        _append(author, lotId, lot, seq, Step.Split, parcelId, eventHash);
    }

    /// @dev The lot `author` splits parcels off at `seq`: a warehouse, the lot stored and not recalled.
    function _splittableLot(address author, bytes32 lotId, uint64 seq) private view returns (LotRecord storage lot) {
        _checkRole(WAREHOUSE_ROLE, author);
        lot = _existingLot(lotId);
        _checkSeq(lotId, lot, seq);
        _checkLotState(lotId, lot, LotState.Stored, Step.Split);
        if (lot.recalled) revert TraceRegistryLotRecalled(lotId);
    }

    function _checkSplitQuantity(bytes32 lotId, LotRecord storage lot, uint64 quantity) private view {
        uint64 available = _unsplit(lot);
        if (quantity > available) revert TraceRegistryOverSplit(lotId, quantity, available);
    }

    /// @dev A parcel's record, in state Split (a single split, or a batch parcel's registration).
    function _writeParcel(ParcelRecord storage parcel, bytes32 lotId, uint32 index, uint64 quantity) private {
        parcel.lotRef = bytes12(lotId);
        parcel.state = ParcelState.Split;
        parcel.index = index;
        parcel.quantity = quantity;
    }

    /// @dev A batch of parcels off a stored lot: one root slot, the lot's counters and head written once, one log.
    function _splitBatch(
        address author,
        bytes32 lotId,
        uint64 firstSeq,
        bytes32 parcelsRoot,
        uint64 quantity,
        bytes32[] calldata eventHashes
    ) private {
        LotRecord storage lot = _splittableLot(author, lotId, firstSeq);
        uint256 count = eventHashes.length;
        if (count == 0 || parcelsRoot == bytes32(0)) revert TraceRegistryEmptySplit(lotId);
        if (quantity < count) revert TraceRegistryQuantityBelowParcels(lotId, quantity, count);
        _checkSplitQuantity(lotId, lot, quantity);

        uint32 firstIndex = lot.parcelCount;
        // uint32(count) cannot truncate (2^32 hashes of calldata are far beyond a block); the sums are checked, so a
        // lot holds at most 2^32 - 1 parcels and events.
        lot.parcelCount = firstIndex + uint32(count);
        lot.splitQuantity += quantity;
        lot.lastSeq += uint32(count);
        _splitRoots[lotId][_splitKey(firstIndex, uint32(count))] = parcelsRoot;
        bytes32 priorHead = lot.head;
        bytes32 head = priorHead;
        for (uint256 i = 0; i < count; ++i) {
            head = keccak256(abi.encodePacked(head, eventHashes[i]));
        }
        lot.head = head;
        emit ParcelsSplit(lotId, firstSeq, author, firstIndex, parcelsRoot, quantity, priorHead, eventHashes);
    }

    /// @dev `expectedLot` is the lot a signed batch names (zero on the direct path).
    function _document(
        address author,
        bytes32 expectedLot,
        bytes32 parcelId,
        uint64 seq,
        DocumentKind kind,
        bytes32 commitment,
        bytes32 eventHash
    ) private {
        _checkRole(_documentRole(kind), author);
        (ParcelRecord storage parcel, bytes32 lotId) = _parcelOfLot(parcelId, expectedLot);
        LotRecord storage lot = _lots[lotId];
        if (kind == DocumentKind.Order && lot.enterprise != author) {
            revert TraceRegistryNotLotEnterprise(lotId, author);
        }
        _checkSeq(lotId, lot, seq);
        _checkParcelState(lotId, parcelId, parcel, ParcelState.Split, Step.DocumentAttached);
        uint8 bit = uint8(1) << uint8(kind);
        if (parcel.documents & bit != 0) revert TraceRegistryDocumentExists(parcelId, kind);

        parcel.documents |= bit;
        _documents[parcelId][kind] = commitment;
        _append(author, lotId, lot, seq, Step.DocumentAttached, parcelId, eventHash);
    }

    function _release(address author, bytes32 expectedLot, bytes32 parcelId, uint64 seq, bytes32 eventHash) private {
        _checkRole(CUSTOMS_ROLE, author);
        (ParcelRecord storage parcel, bytes32 lotId) = _parcelOfLot(parcelId, expectedLot);
        LotRecord storage lot = _lots[lotId];
        _checkSeq(lotId, lot, seq);
        _checkParcelState(lotId, parcelId, parcel, ParcelState.Split, Step.Released);
        if (lot.recalled) revert TraceRegistryLotRecalled(lotId);
        if (parcel.documents != _ALL_DOCUMENTS) revert TraceRegistryMissingDocuments(parcelId, parcel.documents);
        uint64 quantity = parcel.quantity;
        // Cannot fail while splits conserve quantity; kept so the write-off never relies on that alone.
        uint64 available = lot.receivedQuantity - lot.releasedQuantity;
        if (quantity > available) revert TraceRegistryOverRelease(lotId, quantity, available);

        lot.releasedQuantity += quantity;
        parcel.state = ParcelState.Released;
        uint32 index = parcel.index;
        _releasedBits[lotId][index >> 8] |= uint256(1) << (index & 0xff);
        _append(author, lotId, lot, seq, Step.Released, parcelId, eventHash);
    }

    function _delivery(address author, bytes32 expectedLot, bytes32 parcelId, uint64 seq, bytes32 eventHash) private {
        _checkRole(CARRIER_ROLE, author);
        (ParcelRecord storage parcel, bytes32 lotId) = _parcelOfLot(parcelId, expectedLot);
        LotRecord storage lot = _lots[lotId];
        _checkSeq(lotId, lot, seq);
        _checkParcelState(lotId, parcelId, parcel, ParcelState.Released, Step.Delivered);

        parcel.state = ParcelState.Delivered;
        _append(author, lotId, lot, seq, Step.Delivered, parcelId, eventHash);
    }

    function _recall(address author, bytes32 lotId, uint64 seq, bytes32 eventHash) private {
        bool byCustoms = hasRole(CUSTOMS_ROLE, author);
        if (!byCustoms) _checkRole(ENTERPRISE_ROLE, author);
        LotRecord storage lot = _existingLot(lotId);
        if (!byCustoms && lot.enterprise != author) revert TraceRegistryNotLotEnterprise(lotId, author);
        _checkSeq(lotId, lot, seq);
        if (lot.recalled) revert TraceRegistryLotRecalled(lotId);

        lot.recalled = true;
        _append(author, lotId, lot, seq, Step.Recalled, lotId, eventHash);
    }

    function _observe(address author, bytes32 lotId, uint64 seq, bytes32 subject, bytes32 eventHash) private {
        _checkObserver(author);
        LotRecord storage lot = _existingLot(lotId);
        _checkSeq(lotId, lot, seq);
        if (subject == bytes32(0)) subject = lotId;
        else if (subject != lotId) _parcelOfLot(subject, lotId);

        _append(author, lotId, lot, seq, Step.Observed, subject, eventHash);
    }

    /// @dev Observations are recorded by a warehouse, a carrier or customs.
    function _checkObserver(address account) private view {
        if (!hasRole(WAREHOUSE_ROLE, account) && !hasRole(CARRIER_ROLE, account) && !hasRole(CUSTOMS_ROLE, account)) {
            revert AccessControlUnauthorizedAccount(account, WAREHOUSE_ROLE);
        }
    }

    /// @dev Records the run of consecutive Observe operations of `group` that starts at op `start` and sequence
    /// number `seq`, with the checks of {_observe}, reading the lot once and writing its sequence number and head
    /// once; returns the op index and sequence number after the run. (The logs go out in the loop, before the two
    /// writes that conclude it: no call in between.)
    /// The signer's role is checked by the caller; a lot exists exactly when its head is not zero (the head is a
    /// keccak256 output from the declaration on), which spares reading the lot's first slot.
    function _observeRun(
        address signer,
        LotOps calldata group,
        uint256 start,
        uint64 seq
    ) private returns (uint256 end, uint64) {
        bytes32 lotId = group.lotId;
        LotRecord storage lot = _lots[lotId];
        bytes32 head = lot.head;
        if (head == bytes32(0)) revert TraceRegistryUnknownLot(lotId);
        _checkSeq(lotId, lot, seq);
        uint256 count = group.ops.length;
        for (end = start; end < count; ++end) {
            SignedOp calldata op = group.ops[end];
            if (op.action != uint8(Action.Observe)) break;
            bytes32 subject = op.subject;
            if (subject == bytes32(0)) subject = lotId;
            else if (subject != lotId) _parcelOfLot(subject, lotId);
            bytes32 eventHash = op.eventHash;
            head = keccak256(abi.encodePacked(head, eventHash));
            emit EventRecorded(lotId, seq, signer, Step.Observed, subject, eventHash, head);
            ++seq;
        }
        lot.lastSeq = uint32(seq - 1);
        lot.head = head;
        return (end, seq);
    }

    /// @dev List `index` of `splitHashes`, checked against the SplitBatch op that signed it (its hash and length).
    function _signedSplitHashes(
        bytes32 lotId,
        uint64 seq,
        SignedOp calldata op,
        bytes32[][] calldata splitHashes,
        uint256 index
    ) private pure returns (bytes32[] calldata hashes) {
        if (!(index < splitHashes.length)) revert TraceRegistrySplitHashesMismatch(lotId, seq);
        hashes = splitHashes[index];
        if (keccak256(abi.encodePacked(hashes)) != op.eventHash || uint256(op.data) != hashes.length) {
            revert TraceRegistrySplitHashesMismatch(lotId, seq);
        }
    }

    /// @dev Records one group of a signed batch, or skips it when `resent` and the lot's chain already ends with it
    /// (given the head before it, `priorHead`); returns the number of events written.
    function _recordGroup(
        SignedRun memory run,
        LotOps calldata group,
        bool resent,
        bytes32 priorHead,
        bytes32[][] calldata splitHashes
    ) private returns (uint256) {
        if (resent) {
            (bool held, uint256 events, uint256 nextList) = _isRecordedGroup(
                group,
                priorHead,
                splitHashes,
                run.nextList
            );
            if (held) {
                emit EventsAlreadyRecorded(group.lotId, group.seq, uint64(events));
                run.nextList = nextList;
                return 0;
            }
        }
        uint256 count = group.ops.length;
        uint64 first = group.seq;
        uint64 seq = first;
        uint256 i = 0;
        while (i < count) {
            SignedOp calldata op = group.ops[i];
            if (op.action == uint8(Action.Observe)) {
                if (!run.observer) {
                    _checkObserver(run.signer);
                    run.observer = true;
                }
                (i, seq) = _observeRun(run.signer, group, i, seq);
                continue;
            }
            if (op.action == uint8(Action.SplitBatch)) {
                seq += _signedSplit(run, group.lotId, seq, op, splitHashes);
            } else {
                _apply(run.signer, group.lotId, seq, op);
                ++seq;
            }
            ++i;
        }
        unchecked {
            return seq - first; // seq only grew from first
        }
    }

    /// @dev A signed SplitBatch op with the next list of `splitHashes`; returns its number of events.
    function _signedSplit(
        SignedRun memory run,
        bytes32 lotId,
        uint64 seq,
        SignedOp calldata op,
        bytes32[][] calldata splitHashes
    ) private returns (uint64) {
        uint256 list = run.nextList;
        run.nextList = list + 1;
        bytes32[] calldata hashes = _signedSplitHashes(lotId, seq, op, splitHashes, list);
        _splitBatch(run.signer, lotId, seq, op.subject, op.amount, hashes);
        return uint64(hashes.length);
    }

    /// @dev Runs one signed operation as `signer`, exactly as the matching direct function would.
    function _apply(address signer, bytes32 lotId, uint64 seq, SignedOp calldata op) private {
        uint8 action = op.action;
        if (action == uint8(Action.Observe)) {
            _observe(signer, lotId, seq, op.subject, op.eventHash);
        } else if (action == uint8(Action.Declare)) {
            if (seq != 0) revert TraceRegistrySequenceMismatch(lotId, 0, seq);
            _declare(signer, lotId, op.amount, op.eventHash);
        } else if (action == uint8(Action.Entry)) {
            _entry(signer, lotId, seq, op.amount, op.eventHash);
        } else if (action == uint8(Action.Inspection)) {
            if (op.amount > uint8(type(InspectionResult).max)) revert TraceRegistryUnknownAction(action);
            _inspection(signer, lotId, seq, InspectionResult(op.amount), op.eventHash);
        } else if (action == uint8(Action.Storage)) {
            _storage(signer, lotId, seq, op.eventHash);
        } else if (action == uint8(Action.Split)) {
            _split(signer, lotId, seq, op.subject, op.amount, op.eventHash);
        } else if (action == uint8(Action.Document)) {
            if (op.amount > uint8(type(DocumentKind).max)) revert TraceRegistryUnknownAction(action);
            _document(signer, lotId, op.subject, seq, DocumentKind(op.amount), op.data, op.eventHash);
        } else if (action == uint8(Action.Release)) {
            _release(signer, lotId, op.subject, seq, op.eventHash);
        } else if (action == uint8(Action.Delivery)) {
            _delivery(signer, lotId, op.subject, seq, op.eventHash);
        } else if (action == uint8(Action.Recall)) {
            _recall(signer, lotId, seq, op.eventHash);
        } else {
            revert TraceRegistryUnknownAction(action);
        }
    }

    /// @dev One lot's part of a manifest: check and mark the index bits, write the quantity off, log.
    function _releaseLotParcels(bytes32 root, ManifestLot calldata entry) private {
        bytes32 lotId = entry.lotId;
        LotRecord storage lot = _existingLot(lotId);
        _checkSeq(lotId, lot, entry.seq);
        _checkLotState(lotId, lot, LotState.Stored, Step.ManifestReleased);
        if (lot.recalled) revert TraceRegistryLotRecalled(lotId);
        uint256 parcelCount = lot.parcelCount;
        mapping(uint256 => uint256) storage bitmap = _releasedBits[lotId];
        uint256 parcels = 0;
        uint256 words = entry.words.length;
        for (uint256 i = 0; i < words; ++i) {
            uint256 bits = entry.words[i];
            if (bits == 0) continue;
            uint256 word = uint256(entry.firstWord) + i;
            uint256 base = word << 8;
            uint256 valid = parcelCount > base ? parcelCount - base : 0;
            if (valid < 256 && bits >> valid != 0) {
                revert TraceRegistryUnknownParcelIndex(lotId, base + _highestBit(bits), uint32(parcelCount));
            }
            uint256 current = bitmap[word];
            if (current & bits != 0) revert TraceRegistryAlreadyReleased(lotId, word, current & bits);
            bitmap[word] = current | bits;
            parcels += _popcount(bits);
        }
        uint64 quantity = entry.quantity;
        if (parcels == 0 || quantity < parcels) revert TraceRegistryQuantityBelowParcels(lotId, quantity, parcels);
        uint64 available = lot.splitQuantity - lot.releasedQuantity;
        if (quantity > available) revert TraceRegistryOverRelease(lotId, quantity, available);

        lot.releasedQuantity += quantity;
        _append(msg.sender, lotId, lot, entry.seq, Step.ManifestReleased, root, entry.eventHash);
    }

    /// @dev Moves the lot's chain one event on: next sequence number, new head, the log.
    function _append(
        address author,
        bytes32 lotId,
        LotRecord storage lot,
        uint64 seq,
        Step step,
        bytes32 subject,
        bytes32 eventHash
    ) private {
        ++lot.lastSeq;
        bytes32 head = keccak256(abi.encodePacked(lot.head, eventHash));
        lot.head = head;
        emit EventRecorded(lotId, seq, author, step, subject, eventHash, head);
    }

    /// @dev The EIP-712 struct hash of a group. `SignedOp` is a static struct, so `ops` lies in calldata as
    /// consecutive 5-word tuples, each exactly the encodeData of an `Op` (values the ABI decoder would refuse,
    /// e.g. a uint8 with high bits set, give a hash no signer produced and fail the signature check).
    function _hashLotOps(LotOps calldata group) private pure returns (bytes32) {
        SignedOp[] calldata ops = group.ops;
        bytes32 typeHash = OP_TYPEHASH;
        bytes32 groupTypeHash = LOT_OPS_TYPEHASH;
        bytes32 groupHash;
        assembly ("memory-safe") {
            let count := ops.length
            let buffer := mload(0x40)
            let hashes := add(buffer, 0xc0)
            mstore(buffer, typeHash)
            for {
                let i := 0
            } lt(i, count) {
                i := add(i, 1)
            } {
                calldatacopy(add(buffer, 0x20), add(ops.offset, mul(i, 0xa0)), 0xa0)
                mstore(add(hashes, shl(5, i)), keccak256(buffer, 0xc0))
            }
            mstore(buffer, groupTypeHash)
            calldatacopy(add(buffer, 0x20), group, 0x40) // lotId, seq
            mstore(add(buffer, 0x60), keccak256(hashes, shl(5, count)))
            groupHash := keccak256(buffer, 0x80)
        }
        return groupHash;
    }

    /// @dev Whether a signed group is the recorded tail of its lot's chain, given the head before it (`head`); also
    /// the number of events the group holds and the index of the `splitHashes` list after those its SplitBatch ops
    /// use (from `list` on).
    function _isRecordedGroup(
        LotOps calldata group,
        bytes32 head,
        bytes32[][] calldata splitHashes,
        uint256 list
    ) private view returns (bool held, uint256 events, uint256 nextList) {
        LotRecord storage lot = _lots[group.lotId];
        // A group that starts after the lot's last event cannot be on chain: no need to fold it.
        if (lot.state == LotState.None || group.ops.length == 0 || group.seq > lot.lastSeq) return (false, 0, list);
        for (uint256 i = 0; i < group.ops.length; ++i) {
            SignedOp calldata op = group.ops[i];
            if (op.action == uint8(Action.SplitBatch)) {
                uint256 folded;
                (head, folded) = _foldSignedSplit(head, group, events, op, splitHashes, list);
                ++list;
                events += folded;
            } else {
                head = keccak256(abi.encodePacked(head, op.eventHash));
                ++events;
            }
        }
        held = uint256(group.seq) + events == uint256(lot.lastSeq) + 1 && head == lot.head;
        nextList = list;
    }

    /// @dev `head` folded over the event hashes of a signed SplitBatch op (op `events` of the group's events), the
    /// list `index` of `splitHashes`; also their number.
    function _foldSignedSplit(
        bytes32 head,
        LotOps calldata group,
        uint256 events,
        SignedOp calldata op,
        bytes32[][] calldata splitHashes,
        uint256 index
    ) private pure returns (bytes32, uint256) {
        bytes32[] calldata hashes = _signedSplitHashes(group.lotId, group.seq + uint64(events), op, splitHashes, index);
        for (uint256 j = 0; j < hashes.length; ++j) {
            head = keccak256(abi.encodePacked(head, hashes[j]));
        }
        return (head, hashes.length);
    }

    /// @dev The key of a split batch's root: its index range.
    function _splitKey(uint32 firstIndex, uint32 count) private pure returns (uint256) {
        return (uint256(firstIndex) << 32) | count;
    }

    function _existingLot(bytes32 lotId) private view returns (LotRecord storage lot) {
        lot = _lots[lotId];
        if (lot.state == LotState.None) revert TraceRegistryUnknownLot(lotId);
    }

    /// @dev The parcel and its lot id; reverts unless the parcel exists and, if `expectedLot` is set, is of it.
    function _parcelOfLot(
        bytes32 parcelId,
        bytes32 expectedLot
    ) private view returns (ParcelRecord storage parcel, bytes32 lotId) {
        parcel = _parcels[parcelId];
        if (parcel.state == ParcelState.None) revert TraceRegistryUnknownParcel(parcelId);
        lotId = _lotIds[parcel.lotRef];
        if (expectedLot != bytes32(0) && lotId != expectedLot) {
            revert TraceRegistryParcelNotInLot(parcelId, expectedLot);
        }
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
        bytes32 lotId,
        bytes32 parcelId,
        ParcelRecord storage parcel,
        ParcelState expected,
        Step step
    ) private view {
        ParcelState state = parcel.state;
        // A parcel released by a manifest keeps its stored state and is Released by its lot's bitmap.
        if (state == ParcelState.Split && _isReleasedBit(lotId, parcel.index)) state = ParcelState.Released;
        if (state != expected) revert TraceRegistryStepOutOfOrder(parcelId, step, uint8(state));
    }

    /// @dev The parcel's state, counting a manifest release (bitmap) as Released.
    function _parcelState(ParcelRecord storage parcel) private view returns (ParcelState state) {
        state = parcel.state;
        if (state == ParcelState.Split && _isReleasedBit(_lotIds[parcel.lotRef], parcel.index)) {
            state = ParcelState.Released;
        }
    }

    function _isReleasedBit(bytes32 lotId, uint32 index) private view returns (bool) {
        return (_releasedBits[lotId][index >> 8] >> (index & 0xff)) & 1 == 1;
    }

    /// @dev What is left of the lot in bond and not split off: received - split - destroyed - returned.
    function _unsplit(LotRecord storage lot) private view returns (uint64) {
        return lot.receivedQuantity - lot.splitQuantity - lot.destroyedQuantity - lot.returnedQuantity;
    }

    function _documentRole(DocumentKind kind) private pure returns (bytes32) {
        if (kind == DocumentKind.Order) return ENTERPRISE_ROLE;
        if (kind == DocumentKind.Payment) return PAYMENT_ROLE;
        return CARRIER_ROLE;
    }

    /// @dev The number of set bits (SWAR, summed in 16-bit lanes so 256 fits).
    function _popcount(uint256 x) private pure returns (uint256) {
        unchecked {
            x -= (x >> 1) & 0x5555555555555555555555555555555555555555555555555555555555555555;
            x =
                (x & 0x3333333333333333333333333333333333333333333333333333333333333333) +
                ((x >> 2) & 0x3333333333333333333333333333333333333333333333333333333333333333);
            x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f;
            x = (x & 0x00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff) +
                ((x >> 8) & 0x00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff);
            return (x * 0x0001000100010001000100010001000100010001000100010001000100010001) >> 240;
        }
    }

    /// @dev The index of the highest set bit of a non-zero word.
    function _highestBit(uint256 x) private pure returns (uint256 index) {
        while (x > 1) {
            x >>= 1;
            ++index;
        }
    }
}
