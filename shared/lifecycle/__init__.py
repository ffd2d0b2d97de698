"""Image versions over time: rollout into pools, retirement of old pools, retention of versions."""
