"""Pictures: flow fields as colours, point tracks drawn on frames."""
