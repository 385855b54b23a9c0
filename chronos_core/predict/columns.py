"""The prediction columns every time model writes (batch = compute + loader, 80% interval on batch)."""

PRED_COLUMNS = (
    "pred_batch_time_ms",
    "pred_compute_ms",
    "pred_loader_ms",
    "pred_batch_time_ms_lo",
    "pred_batch_time_ms_hi",
)
