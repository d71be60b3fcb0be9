"""The simulator's refusals (chat/simulator.py): a request it refuses raises
SimulatedError wherever that is found (the key, the body, a directive, an image), and
chat/simulator_responses.py's error_send writes it as the error body."""

# The reference lists status codes and their meaning but never shows an error body, so
# errors use the OpenAI-like {"error": {"message", "type", "code"}} shape that the
# OpenAI SDK (which the reference recommends) already knows how to read.
ERRORS = {
    400: ("invalid_request_error", "Bad request: input format error."),
    401: ("authentication_error", "Authentication Error: API Key is missing or invalid."),
    404: ("not_found_error", "Not found: invalid Endpoint URL or model ID."),
    405: ("invalid_request_error", "Method not allowed."),
    429: ("rate_limit_error", "Too Many Requests: you are sending requests too quickly."),
    500: ("server_error", "Internal Server Error: the server had an error while "
          "processing your request."),
    529: ("overloaded_error", "System busy: our servers are experiencing high traffic."),
}


class SimulatedError(Exception):
    def __init__(self, status: int, message: str | None = None, *,
                 type_: str | None = None, headers: list | None = None):
        default_type, default_message = ERRORS.get(
            status, ("api_error", f"Simulated error {status}."))
        super().__init__(message or default_message)
        self.status = status
        self.message = message or default_message
        self.type = type_ or default_type
        self.headers = headers or []
