"""Operations: metrics, logs and health."""
