/// Constants of the peer wire protocol (`docs/protocol.md`).
public enum PeerProtocol {
    /// "VMHP" read as a big-endian u32.
    public static let magic: UInt32 = 0x564D_4850
    /// The only version this build speaks. Bumped on any incompatible change of a
    /// payload; the header layout and the handshake frames (always header version 1,
    /// ``handshakeFrameVersion``) are frozen so two different versions can always tell
    /// each other why they cannot talk. Version 2: VOLUME_STATE carries the split-brain
    /// policy and the generation origin.
    public static let currentVersion: UInt16 = 2
    public static let supportedVersions: ClosedRange<UInt16> = 2...2
    /// Header version of HELLO, CHALLENGE, RESPONSE, WELCOME and REFUSE in every build.
    public static let handshakeFrameVersion: UInt16 = 1
    /// Fixed header size in bytes.
    public static let headerSize = 32
    /// Largest data block a WRITE or RESYNC_DATA frame carries. 32 MiB is well
    /// above the largest guest request QEMU issues (its NBD client caps at 32 MiB)
    /// and bounds what one connection can make us buffer.
    public static let maximumDataLength = 32 << 20
    /// Largest payload the decoder accepts by default: one maximum data block
    /// plus room for the fixed fields in front of it.
    public static let maximumPayloadLength = maximumDataLength + 4096
    /// Size of the handshake nonces and HMAC-SHA256 responses.
    public static let nonceSize = 32
    /// Longest host, cluster or volume name, in UTF-8 bytes.
    public static let maximumNameLength = 255
    /// Longest REFUSE / GOODBYE message, in UTF-8 bytes.
    public static let maximumMessageLength = 1024
}
