"""Where the gateway learns which workers exist: a static backends file, or Kubernetes pods."""
