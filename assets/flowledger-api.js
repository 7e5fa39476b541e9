// How the dashboard's buttons call the API: same origin, JSON both ways, the session's CSRF token (the
// cookie the server sets) echoed as X-CSRFToken. Always resolves to {ok, status, body}: a reply that is not
// JSON (a proxy's 502 page) or a network failure becomes a message instead of a button that does nothing.
window.flowledgerApi = function (method, url, body) {
    var token = decodeURIComponent((document.cookie.match(/(?:^|; )_csrf_token=([^;]*)/) || [])[1] || '');
    return fetch(url, {
        method: method, credentials: 'same-origin',
        headers: {'Content-Type': 'application/json', 'Accept': 'application/json', 'X-CSRFToken': token},
        body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (b) {
            return {ok: r.ok, status: r.status, body: b || {}};
        });
    }).catch(function (e) {
        return {ok: false, status: 0, body: {detail: 'the server could not be reached (' + e + ')'}};
    });
};
// The reason a refused call gives, for messages: the problem's detail, else its title, else the status.
window.flowledgerApiReason = function (reply) {
    return reply.body.detail || reply.body.title || ('HTTP ' + reply.status);
};
