"""Drift: profile (reference, built at training), observe + thresholds + statistics (compare),
spark (compare_spark), html (render_html), champion (`retrainer drift`: champion_drift)."""
