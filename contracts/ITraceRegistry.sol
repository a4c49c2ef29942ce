// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/**
 * @title ITraceRegistry
 * @notice The on-chain record of bonded-import goods lots: each journey step of a lot (and of the parcels
 * split from it) is one recorded event, carrying the GS1 canonical hash of its EPCIS event, a per-lot
 * sequence number and the running hash-chain head of the lot.
 *
 * Encodings an independent client needs (see docs/contracts.md):
 * - lotId    = keccak256(bytes("01" + gtin14 + "10" + lotNumber))   (GS1 element string, AI 10 last)
 * - parcelId = keccak256(bytes("00" + sscc18))
 * - eventHash = the 32 digest bytes of the event's `ni:///sha-256;<hex>?ver=CBV2.0` hash
 * - head_0 = bytes32(0); head_{n+1} = keccak256(abi.encodePacked(head_n, eventHash_n))
 * - role ids: keccak256 of the role name ("enterprise", "warehouse", "customs", "carrier", "payment",
 *   "customs_admin"); the platform admin holds DEFAULT_ADMIN_ROLE (0x00).
 */
interface ITraceRegistry {
    /// @notice Where a lot stands in the bonded-import journey.
    enum LotState {
        None,
        Declared,
        Entered,
        Cleared,
        Held,
        Stored
    }

    /// @notice Where a parcel stands after it was split off its lot.
    enum ParcelState {
        None,
        Split,
        Released,
        Delivered
    }

    /// @notice The outcome of a customs inspection.
    enum InspectionResult {
        Conformant,
        NonConformant,
        Sampled
    }

    /// @notice The three documents of a consumer order.
    enum DocumentKind {
        Order,
        Payment,
        Waybill
    }

    /// @notice The kind of a recorded event.
    enum Step {
        Declared,
        Entered,
        Inspected,
        Stored,
        Split,
        DocumentAttached,
        Released,
        Delivered,
        Recalled
    }

    /// @notice A lot's ledger. `receivedQuantity` differing from `declaredQuantity` is the entry discrepancy.
    struct Lot {
        LotState state;
        bool recalled;
        address enterprise;
        uint64 declaredQuantity;
        uint64 receivedQuantity;
        uint64 splitQuantity;
        uint64 releasedQuantity;
        uint64 nextSeq;
        uint32 parcelCount;
        bytes32 head;
    }

    /// @notice A parcel split off a lot; `documents` is a bitmask of attached DocumentKinds (bit = 1 << kind).
    struct Parcel {
        bytes32 lotId;
        ParcelState state;
        uint32 index;
        uint64 quantity;
        uint8 documents;
    }

    /// @notice An event was recorded on the chain of `lotId` at position `seq` by `author`.
    /// @param subject The lot id for lot steps, the parcel id for parcel steps.
    event EventRecorded(
        bytes32 indexed lotId,
        uint64 indexed seq,
        address indexed author,
        Step step,
        bytes32 subject,
        bytes32 eventHash,
        bytes32 head
    );

    /// @notice A lot id that is already declared.
    error TraceRegistryLotExists(bytes32 lotId);
    /// @notice A lot id that was never declared.
    error TraceRegistryUnknownLot(bytes32 lotId);
    /// @notice A parcel id that is already split off a lot.
    error TraceRegistryParcelExists(bytes32 parcelId);
    /// @notice A parcel id that was never split off a lot.
    error TraceRegistryUnknownParcel(bytes32 parcelId);
    /// @notice A step that the lot or parcel's current state does not allow.
    error TraceRegistryStepOutOfOrder(bytes32 subject, Step step, uint8 state);
    /// @notice An event whose sequence number is not the lot's next one.
    error TraceRegistrySequenceMismatch(bytes32 lotId, uint64 expected, uint64 provided);
    /// @notice A quantity of zero where goods must move.
    error TraceRegistryZeroQuantity(bytes32 subject);
    /// @notice A split above what remains of the lot.
    error TraceRegistryOverSplit(bytes32 lotId, uint64 requested, uint64 available);
    /// @notice A release above the lot's bonded balance.
    error TraceRegistryOverRelease(bytes32 lotId, uint64 requested, uint64 available);
    /// @notice A document of a kind already attached to the parcel.
    error TraceRegistryDocumentExists(bytes32 parcelId, DocumentKind kind);
    /// @notice A release before all three documents are attached; `present` is the bitmask.
    error TraceRegistryMissingDocuments(bytes32 parcelId, uint8 present);
    /// @notice An account acting for a lot that belongs to another enterprise.
    error TraceRegistryNotLotEnterprise(bytes32 lotId, address account);
    /// @notice A step on a recalled lot that a recall forbids.
    error TraceRegistryLotRecalled(bytes32 lotId);

    /// @notice Declares a new lot (enterprise). Its event is sequence 0.
    function declareLot(bytes32 lotId, uint64 declaredQuantity, bytes32 eventHash) external;

    /// @notice Records the count at bonded entry (warehouse); a difference from the declaration is kept.
    function recordEntry(bytes32 lotId, uint64 seq, uint64 countedQuantity, bytes32 eventHash) external;

    /// @notice Records the result of the entry inspection (customs).
    function recordInspection(bytes32 lotId, uint64 seq, InspectionResult result, bytes32 eventHash) external;

    /// @notice Records that a cleared lot is stored in the bonded warehouse (warehouse).
    function recordStorage(bytes32 lotId, uint64 seq, bytes32 eventHash) external;

    /// @notice Splits a parcel of `quantity` units off a stored lot (warehouse).
    function splitParcel(bytes32 lotId, uint64 seq, bytes32 parcelId, uint64 quantity, bytes32 eventHash) external;

    /// @notice Attaches one of the three documents of a parcel's order, as a salted commitment
    /// (order: the lot's enterprise; payment: a payment institution; waybill: a carrier).
    function attachDocument(
        bytes32 parcelId,
        uint64 seq,
        DocumentKind kind,
        bytes32 commitment,
        bytes32 eventHash
    ) external;

    /// @notice Releases a parcel from the bonded zone and writes its quantity off the lot (customs).
    function releaseParcel(bytes32 parcelId, uint64 seq, bytes32 eventHash) external;

    /// @notice Records the delivery of a released parcel to its consignee (carrier).
    function recordDelivery(bytes32 parcelId, uint64 seq, bytes32 eventHash) external;

    /// @notice Recalls a lot and so every parcel split from it (the lot's enterprise or customs).
    function recall(bytes32 lotId, uint64 seq, bytes32 eventHash) external;

    /// @notice Stops every write until `unpause` (admin); reads go on.
    function pause() external;

    /// @notice Resumes writes after `pause` (admin).
    function unpause() external;

    /// @notice The ledger of a lot (all zero for an unknown lot).
    function getLot(bytes32 lotId) external view returns (Lot memory);

    /// @notice A parcel (all zero for an unknown parcel).
    function getParcel(bytes32 parcelId) external view returns (Parcel memory);

    /// @notice Whether the lot, or the lot a parcel was split from, is recalled.
    function isRecalled(bytes32 id) external view returns (bool);

    /// @notice The salted commitment of a parcel's document of `kind` (zero while none is attached).
    function getDocument(bytes32 parcelId, DocumentKind kind) external view returns (bytes32);
}
