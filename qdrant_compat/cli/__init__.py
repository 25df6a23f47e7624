"""Click CLI (thin: options in, one library call, output out)."""
