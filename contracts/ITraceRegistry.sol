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
 * - a split batch's parcelsRoot: OpenZeppelin StandardMerkleTree root over leaves
 *   (bytes32 parcelId, uint32 index, uint64 quantity), leaf = keccak256(bytes.concat(keccak256(abi.encode(...))))
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
        Stored,
        Closed
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
        Recalled,
        Observed,
        ClearedByRule,
        ManifestReleased,
        Returned,
        Destroyed,
        HoldLifted
    }

    /// @notice What an operation of a signed batch does (`SignedOp.action`); each mirrors a direct function.
    enum Action {
        Declare,
        Entry,
        Inspection,
        Storage,
        Split,
        Document,
        Release,
        Delivery,
        Recall,
        Observe,
        SplitBatch
    }

    /// @notice How customs disposes of non-conformant goods.
    enum Disposal {
        Returned,
        Destroyed
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

    /// @notice One event of a signed batch (EIP-712 type `Op`). Field use per action:
    /// Declare: amount = declared quantity; Entry: amount = counted quantity; Inspection: amount = result;
    /// Split: subject = parcel id, amount = quantity; SplitBatch (see {splitParcels}): subject = parcelsRoot,
    /// amount = quantity, data = bytes32(number of parcels), eventHash = keccak256(abi.encodePacked(eventHashes))
    /// with the event hashes passed in `recordSigned`'s `splitHashes`; Document: subject = parcel id, amount = kind,
    /// data = commitment; Release, Delivery: subject = parcel id; Observe: subject = one of the lot's parcels,
    /// or zero (or the lot id) for the lot itself.
    /// Unused fields are ignored (sign them as zero).
    struct SignedOp {
        uint8 action;
        bytes32 subject;
        uint64 amount;
        bytes32 data;
        bytes32 eventHash;
    }

    /// @notice Consecutive events of one lot in a signed batch (EIP-712 type `LotOps`): the first op takes
    /// sequence number `seq`, each op one more, except a SplitBatch op, which takes one per parcel.
    struct LotOps {
        bytes32 lotId;
        uint64 seq;
        SignedOp[] ops;
    }

    /// @notice A batch of one actor's events, signed by that actor (EIP-712 primary type `Batch`).
    struct Batch {
        address signer;
        uint64 deadline;
        LotOps[] lots;
    }

    /// @notice One lot's part of a release manifest: parcels by their index bits, `words[i]` covering indices
    /// `256 * (firstWord + i)` to `256 * (firstWord + i) + 255` (bit j = index 256 * word + j).
    struct ManifestLot {
        bytes32 lotId;
        uint64 seq;
        uint64 quantity;
        uint32 firstWord;
        uint256[] words;
        bytes32 eventHash;
    }

    /// @notice A leaf of a release manifest's Merkle tree: the parcel and the salted commitments of its order,
    /// payment and waybill (StandardMerkleTree leaf types
    /// `["bytes32","bytes32","uint32","uint64","bytes32","bytes32","bytes32"]`).
    struct ReleaseRecord {
        bytes32 parcelId;
        bytes32 lotId;
        uint32 index;
        uint64 quantity;
        bytes32 order;
        bytes32 payment;
        bytes32 waybill;
    }

    /// @notice A lot's quantity ledger: released + destroyed + returned + remaining = received.
    struct Ledger {
        uint64 declared;
        uint64 received;
        uint64 split;
        uint64 released;
        uint64 destroyed;
        uint64 returned;
        uint64 remaining;
        uint8 riskRange;
    }

    /// @notice A range of HS codes (10-digit numbers, inclusive) that customs marks low risk for enterprises
    /// of at least `minCreditLevel`; `hsTo == 0` once revoked.
    struct LowRiskRange {
        uint40 hsFrom;
        uint40 hsTo;
        uint8 minCreditLevel;
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

    /// @notice Warehouse `author` split `eventHashes.length` parcels of `quantity` units in all off `lotId`: their
    /// events take sequence numbers `firstSeq`, `firstSeq + 1`, ... and fold, in order, into the lot's head from
    /// `priorHead` on; the parcels take indices `firstIndex`, `firstIndex + 1`, ...; `parcelsRoot` is the Merkle
    /// root of their (parcelId, index, quantity) leaves. (The topics are those of {EventRecorded}.)
    event ParcelsSplit(
        bytes32 indexed lotId,
        uint64 indexed firstSeq,
        address indexed author,
        uint32 firstIndex,
        bytes32 parcelsRoot,
        uint64 quantity,
        bytes32 priorHead,
        bytes32[] eventHashes
    );

    /// @notice A parcel of a split batch was proven under its root and now has a parcel record (no event of the
    /// lot's chain: anyone may register a parcel the root holds).
    event ParcelRegistered(bytes32 indexed lotId, bytes32 indexed parcelId, uint32 index, uint64 quantity);

    /// @notice Events of a re-sent signed batch that the lot's chain already holds (nothing was written again).
    event EventsAlreadyRecorded(bytes32 indexed lotId, uint64 seq, uint64 count);

    /// @notice Customs released parcels of `lots` lots under the manifest whose release records have `root`.
    event ManifestRecorded(bytes32 indexed root, address indexed author, uint256 lots);

    /// @notice Customs set an enterprise's AEO credit level.
    event CreditLevelSet(address indexed enterprise, uint8 level, address indexed author);

    /// @notice Customs marked a range of HS codes low risk.
    event LowRiskRangeAdded(uint8 indexed rangeId, uint40 hsFrom, uint40 hsTo, uint8 minCreditLevel, address author);

    /// @notice Customs revoked a low-risk range; lots declared under it need an inspection again.
    event LowRiskRangeRevoked(uint8 indexed rangeId, address author);

    /// @notice A lot was declared with its HS code under a low-risk range.
    event LotClassified(bytes32 indexed lotId, uint40 hsCode, uint8 rangeId);

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

    /// @notice A signature that does not recover to the batch's signer (`recovered` is zero if malformed).
    error TraceRegistryInvalidSignature(address signer, address recovered);
    /// @notice A signed batch submitted after its deadline.
    error TraceRegistrySignatureExpired(uint64 deadline, uint256 timestamp);
    /// @notice A signed operation with an action that does not exist.
    error TraceRegistryUnknownAction(uint8 action);
    /// @notice A parcel named in an operation on another lot.
    error TraceRegistryParcelNotInLot(bytes32 parcelId, bytes32 lotId);
    /// @notice Parcels (the `bits` of bitmap `word`) that are released already.
    error TraceRegistryAlreadyReleased(bytes32 lotId, uint256 word, uint256 bits);
    /// @notice A manifest bit for a parcel index that was never split off the lot.
    error TraceRegistryUnknownParcelIndex(bytes32 lotId, uint256 index, uint32 parcelCount);
    /// @notice A manifest quantity below its number of parcels (every parcel holds at least one unit).
    error TraceRegistryQuantityBelowParcels(bytes32 lotId, uint64 quantity, uint256 parcels);
    /// @notice A manifest root that was recorded before (or zero).
    error TraceRegistryManifestExists(bytes32 root);
    /// @notice A return or destruction above what is left of the lot in bond and not split off.
    error TraceRegistryOverDisposal(bytes32 lotId, uint64 requested, uint64 available);
    /// @notice A lot that is not declared under an active low-risk range.
    error TraceRegistryNotLowRisk(bytes32 lotId, uint8 rangeId);
    /// @notice A declared HS code outside the low-risk range claimed for it (or the range is not active).
    error TraceRegistryHsCodeOutOfRange(uint40 hsCode, uint8 rangeId);
    /// @notice An enterprise whose AEO credit level is below what the low-risk range requires.
    error TraceRegistryCreditTooLow(address enterprise, uint8 level, uint8 required);
    /// @notice A rule-based clearance of a lot whose entry count differs from its declaration.
    error TraceRegistryEntryDiscrepancy(bytes32 lotId, uint64 declared, uint64 received);
    /// @notice A low-risk range with `hsFrom > hsTo` or `hsTo == 0`, or a minimum credit level of zero.
    error TraceRegistryInvalidRange(uint40 hsFrom, uint40 hsTo, uint8 minCreditLevel);
    /// @notice No more low-risk range ids (at most 255).
    error TraceRegistryTooManyRanges();
    /// @notice A split batch without parcels or with a zero root.
    error TraceRegistryEmptySplit(bytes32 lotId);
    /// @notice No split batch of the lot starts at `firstIndex` with `count` parcels.
    error TraceRegistryUnknownSplit(bytes32 lotId, uint32 firstIndex, uint32 count);
    /// @notice A parcel index outside the split batch it is claimed under.
    error TraceRegistryIndexOutOfSplit(bytes32 lotId, uint32 index, uint32 firstIndex, uint32 count);
    /// @notice A leaf (parcel, index, quantity) that the proof does not tie to the split batch's root.
    error TraceRegistryInvalidProof(bytes32 lotId, bytes32 parcelId);
    /// @notice A SplitBatch op whose event hashes (the next list of `splitHashes`) are not the signed ones.
    error TraceRegistrySplitHashesMismatch(bytes32 lotId, uint64 seq);

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

    /// @notice Splits `eventHashes.length` parcels, `quantity` units in all, off a stored lot (warehouse): one
    /// event per parcel (sequence numbers from `firstSeq` on, hashes folded into the head in order), indices from
    /// the lot's parcel count on, and one {ParcelsSplit} log. Only `parcelsRoot` is stored: a parcel gets its
    /// record, which its own later steps need, through {registerParcel}.
    function splitParcels(
        bytes32 lotId,
        uint64 firstSeq,
        bytes32 parcelsRoot,
        uint64 quantity,
        bytes32[] calldata eventHashes
    ) external;

    /// @notice Creates the record of a parcel of a split batch (anyone): the leaf (parcelId, index, quantity) is
    /// checked with `proof` under the root of the lot's batch of `count` parcels from `firstIndex` on, and the
    /// index must lie in that range. A parcel released by a manifest already reads as Released.
    function registerParcel(
        bytes32 lotId,
        uint32 firstIndex,
        uint32 count,
        bytes32 parcelId,
        uint32 index,
        uint64 quantity,
        bytes32[] calldata proof
    ) external;

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

    /// @notice Records a batch of events signed by one actor (EIP-712), submitted by any relayer. Each event is
    /// checked as the direct function would check it from the signer, and logged with the signer as author.
    /// A group already on chain (its `seq` below the lot's next one) is skipped when `priorHeads[g]` (the
    /// lot's head before the group, 0 before sequence 0) folds over its event hashes into the lot's current
    /// head; otherwise it reverts with {TraceRegistrySequenceMismatch}. `priorHeads` may be empty.
    /// `splitHashes` holds the event hashes of the batch's SplitBatch ops, one list per op in batch order
    /// (skipped groups' included); each must hash to its op's signed `eventHash`.
    /// @return recorded The number of events written (skipped groups not counted).
    function recordSigned(
        Batch calldata batch,
        bytes calldata signature,
        bytes32[] calldata priorHeads,
        bytes32[][] calldata splitHashes
    ) external returns (uint256 recorded);

    /// @notice Records an observation (a WMS count, picking, a temperature log, a transit scan) on a lot's chain
    /// without changing its state (warehouse, carrier or customs). `subject` is one of the lot's parcels, or zero
    /// (or the lot id) for the lot itself; the log names the lot id then.
    function recordObservation(bytes32 lotId, uint64 seq, bytes32 subject, bytes32 eventHash) external;

    /// @notice Declares a new lot (enterprise) with its HS code under low-risk range `rangeId`.
    function declareLotClassified(
        bytes32 lotId,
        uint64 declaredQuantity,
        uint40 hsCode,
        uint8 rangeId,
        bytes32 eventHash
    ) external;

    /// @notice Clears an entered lot without inspection by the low-risk rule (warehouse): the lot was declared
    /// under a still active range, its enterprise's credit level meets the range and the count matches.
    function clearByRule(bytes32 lotId, uint64 seq, bytes32 eventHash) external;

    /// @notice Sets an enterprise's AEO credit level (customs); 0 means not rated.
    function setCreditLevel(address enterprise, uint8 level) external;

    /// @notice Marks HS codes `hsFrom..hsTo` low risk for enterprises of at least `minCreditLevel` (customs).
    function addLowRiskRange(uint40 hsFrom, uint40 hsTo, uint8 minCreditLevel) external returns (uint8 rangeId);

    /// @notice Revokes a low-risk range (customs).
    function revokeLowRiskRange(uint8 rangeId) external;

    /// @notice Returns or destroys `quantity` units of a held or stored lot that are not split off (customs);
    /// a held lot with nothing left is closed.
    function recordDisposal(bytes32 lotId, uint64 seq, Disposal kind, uint64 quantity, bytes32 eventHash) external;

    /// @notice Lifts the hold of a held lot after its non-conformant part was disposed of (customs): cleared.
    function liftHold(bytes32 lotId, uint64 seq, bytes32 eventHash) external;

    /// @notice Releases many parcels of many lots at once (customs): marks their index bits, writes each lot's
    /// `quantity` off its balance, logs one event per lot with `root` as subject and records `root`, the Merkle
    /// root of the parcels' {ReleaseRecord}s.
    function releaseManifest(bytes32 root, ManifestLot[] calldata lots) external;

    /// @notice Stops every write until `unpause` (admin); reads go on.
    function pause() external;

    /// @notice Resumes writes after `pause` (admin).
    function unpause() external;

    /// @notice The ledger of a lot (all zero for an unknown lot).
    function getLot(bytes32 lotId) external view returns (Lot memory);

    /// @notice A parcel (all zero for an unknown parcel).
    function getParcel(bytes32 parcelId) external view returns (Parcel memory);

    /// @notice The root of the lot's split batch of `count` parcels from index `firstIndex` on (zero if none).
    function splitRoot(bytes32 lotId, uint32 firstIndex, uint32 count) external view returns (bytes32);

    /// @notice Whether the lot, or the lot a (registered) parcel was split from, is recalled.
    function isRecalled(bytes32 id) external view returns (bool);

    /// @notice The salted commitment of a parcel's document of `kind` (zero while none is attached).
    function getDocument(bytes32 parcelId, DocumentKind kind) external view returns (bytes32);

    /// @notice The full quantity ledger of a lot (all zero for an unknown lot).
    function getLedger(bytes32 lotId) external view returns (Ledger memory);

    /// @notice Word `word` of a lot's release bitmap (bit j set: parcel index 256 * word + j is released).
    function releasedWord(bytes32 lotId, uint256 word) external view returns (uint256);

    /// @notice The block in which manifest `root` was recorded (0 if never).
    function manifestBlock(bytes32 root) external view returns (uint256);

    /// @notice Whether `record` is a leaf of recorded manifest `root` (checked with `proof`) and describes a
    /// parcel released on chain (same lot, index and quantity).
    function verifyRelease(
        bytes32 root,
        ReleaseRecord calldata record,
        bytes32[] calldata proof
    ) external view returns (bool);

    /// @notice Whether the lot's events from `seq` on are exactly `eventHashes`, given its head before `seq`
    /// (`priorHead`): a re-sent event is recognised by folding the hash chain, without a slot per event.
    function isRecorded(
        bytes32 lotId,
        uint64 seq,
        bytes32 priorHead,
        bytes32[] calldata eventHashes
    ) external view returns (bool);

    /// @notice An enterprise's AEO credit level.
    function creditLevel(address enterprise) external view returns (uint8);

    /// @notice A low-risk range (all zero if unknown or revoked: `hsTo == 0`).
    function lowRiskRange(uint8 rangeId) external view returns (LowRiskRange memory);
}
