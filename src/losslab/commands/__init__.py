"""One module per command: its runner (config -> run -> result), its result document, report, plot data and
`--expect` metrics. Each module's `main(cfg, json_out=..., quiet=...)` is what the CLI calls."""
