"""The prediction columns every time model writes (batch = compute + loader, 80% interval on batch)."""

PRED_COLUMNS = (
    "pred_batch_time_ms",
    "pred_compute_ms",
    "pred_loader_ms",
    "pred_batch_time_ms_lo",
    "pred_batch_time_ms_hi",
)

# Hosts (the public tables' `Provisioning`, canonical `host_provider`) the loader model knows; any
# other or a missing provider reads as all zeros (unknown host).
HOST_PROVIDERS = ("RunPod", "GCP")
