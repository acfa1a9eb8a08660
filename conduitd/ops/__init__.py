"""Operating conduitd: health server, metrics, run manifest, systemd notify, traces and logs."""
