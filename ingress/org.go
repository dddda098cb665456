package ingress

import (
	"net/http"
	"strings"

	"github.com/seatd/seatd/events"
	"github.com/seatd/seatd/storage"
)

// The organization API (/v1/customer-seats): the seller's backend manages
// the seats of every customer of its organization with an organization
// access token, as with Polar's customer seat API. It runs the portal's
// handlers (seatAPI), so assigns, resends, revokes and batches take the
// same path through the ledger and the queue; only the caller differs:
// an organization, which reaches every pool of its organization and
// nothing of any other (404, exactly like something that does not exist).

func (s *Server) orgAPI() seatAPI {
	return seatAPI{Server: s, prefix: "/v1/customer-seats", seatParam: "seat_id", authorize: s.orgAuth,
		decodeAssign: events.DecodeOrgSeatAssign}
}

// orgScopes are the scopes that let a token do what an endpoint needs, any
// one of them being enough. As in Polar, listing seats needs
// customer_seats:read and changing them customer_seats:write; reading the
// outcome of one's own request or batch takes either, so a write-only
// token can collect the answer to what it submitted.
var orgScopes = map[access][]string{
	readAccess:  {storage.ScopeSeatsRead},
	pollAccess:  {storage.ScopeSeatsRead, storage.ScopeSeatsWrite},
	writeAccess: {storage.ScopeSeatsWrite},
}

// orgAuth authenticates an organization access token (Polar's
// Organization subject) and checks its scopes. Any other bearer token,
// such as a customer session, is unknown here: 401, as Polar answers a
// subject the endpoint does not allow.
func (s *Server) orgAuth(w http.ResponseWriter, r *http.Request, need access) (caller, bool) {
	tok, ok := authenticate(s, w, r, s.orgTokens.authenticate)
	if !ok {
		return caller{}, false
	}
	scopes := orgScopes[need]
	for _, sc := range scopes {
		if tok.HasScope(sc) {
			return caller{Owner: storage.Owner{OrganizationID: tok.OrganizationID}, bucket: "oat:" + tok.ID}, true
		}
	}
	insufficientScope(w, scopes)
	return caller{}, false
}

// insufficientScopeDescription is authlib's wording, which Polar answers.
const insufficientScopeDescription = "The request requires higher privileges than provided by the access token."

// insufficientScope answers 403 as Polar does (RFC 6750 §3.1, through
// authlib): error "insufficient_scope", error_description, and a
// WWW-Authenticate challenge naming the scopes needed. The body carries
// seatd's detail too, so it is Polar's body and seatd's {"error",
// "detail"} at once: a Polar SDK client, which raises the endpoint's 403
// error class with the parsed body, reads the same error and
// error_description it would read from Polar.
func insufficientScope(w http.ResponseWriter, scopes []string) {
	need := strings.Join(scopes, " ")
	w.Header().Set("WWW-Authenticate", `Bearer realm="polar", scope="`+need+`", error="insufficient_scope", error_description="`+
		insufficientScopeDescription+`"`)
	writeJSON(w, answerTo(events.CodeInsufficientScope).status, map[string]string{
		"error":             ErrorName(events.CodeInsufficientScope),
		"error_description": insufficientScopeDescription,
		"detail":            insufficientScopeDescription + " It needs the scope " + strings.Join(scopes, " or ") + ".",
	})
}
