// Package invite is what an invitee sees: the invitation email and the
// claim page its button opens, rendered from one set of templates so they
// look and read alike.
//
// Every word and colour lives in the files under templates/, embedded in
// the binary: email.txt (subject and plain-text body), email.html, page.html
// (one section per state of a link), style.css (shared: linked by the page,
// inlined into the email) and claim.js (the page's optional script). Load
// with a directory overlays it: a file of the same name there replaces the
// embedded one, so an operator changes wording or colours without
// rebuilding (SEATD_TEMPLATES). Templates are parsed once at start, so a
// broken override stops the process with the file's name and line rather
// than failing an invitee later.
//
// The package renders; it does not decide. Which state a link is in comes
// from storage, the claim itself from the worker, and the HTTP headers
// (CSP, frame and referrer policy) from the ingress. html/template escapes
// everything a customer typed (product and organization names, addresses).
package invite
