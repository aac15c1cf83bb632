import Metrics

/// A volume's data-path figures, through swift-metrics: vmhad exports them to Prometheus when
/// metrics are on (docs/observability.md); otherwise the calls go to the no-op backend.
/// Names are the documented metric names; dimensions are the volume's labels.
struct VolumeMetrics: Sendable {
    let writes: Counter
    let writtenBytes: Counter
    let writeLatency: Metrics.Timer
    let peerAckLatency: Metrics.Timer
    let activityLogWrites: Counter
    let bitmapWrites: Counter

    init(dimensions: [(String, String)]) {
        writes = Counter(label: "vmha_volume_writes_total", dimensions: dimensions)
        writtenBytes = Counter(label: "vmha_volume_written_bytes_total", dimensions: dimensions)
        writeLatency = Metrics.Timer(label: "vmha_volume_write_latency_seconds", dimensions: dimensions, preferredDisplayUnit: .seconds)
        peerAckLatency = Metrics.Timer(label: "vmha_volume_peer_ack_latency_seconds", dimensions: dimensions, preferredDisplayUnit: .seconds)
        activityLogWrites = Counter(label: "vmha_volume_activity_log_writes_total", dimensions: dimensions)
        bitmapWrites = Counter(label: "vmha_volume_bitmap_writes_total", dimensions: dimensions)
    }
}
