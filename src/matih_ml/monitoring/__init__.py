"""Model monitoring: reference profiles, live samples, drift and alert checks."""
