package api

// AllowedParams are each kind's query parameters, for the document's tests.
var AllowedParams = allowedParams
