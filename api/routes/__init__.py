"""HTTP routes: validate, call a service function, shape the response."""
