"""forecasting stage."""
