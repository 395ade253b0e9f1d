"""The HTTP API: dependencies, error bodies, request/response shapes and one router per
resource. Routes are thin; the work happens in `serving/services/`."""
