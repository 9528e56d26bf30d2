// A real SAML 2.0 identity provider (npm samlify) on loopback, for the test suite.
// Usage: node idp.mjs <port>
//
// Entity ID http://127.0.0.1:<port>/metadata. The test "logs in" by POSTing a user and the
// options of the next Response to /login; the session lives only in the idp_session cookie
// (base64url JSON), so parallel tests share nothing. A service provider needs no registration:
// its entity ID must be the URL of its metadata (on loopback), which is fetched per request.
//
//   GET  /metadata[?rollover=1]  IdP metadata; rollover=1 lists a second signing certificate
//   POST /login                  form: email (required), first_name, last_name, groups (a,b,c),
//                                sign=assertion|response|both|none, key=primary|rollover|rogue,
//                                not_before_offset, not_on_or_after_offset (seconds from now),
//                                audience, destination, recipient, issuer (overrides),
//                                status=<StatusCode URN suffix, e.g. Requester>,
//                                algorithm=sha256|sha1 (the signature's, and its digest's),
//                                digest=sha1 (a SHA-1 digest under an RSA-SHA256 signature),
//                                encrypt=1
//                                -> 204 + Set-Cookie idp_session
//   GET  /sso?SAMLRequest=&RelayState=   HTTP-Redirect AuthnRequest -> auto-posting form
//   POST /sso  (SAMLRequest, RelayState) HTTP-POST AuthnRequest     -> auto-posting form
//   GET  /initiate?sp=<SP metadata URL>&relay_state=   IdP-initiated (unsolicited) Response
//   GET  /health                 "ok"
//
// Keys are the test-only ones in ./keys. Responses are built from samlify's own login-response
// template and signed with samlify's signer (RSA-SHA256, SHA-256 digest, exclusive c14n), with
// the Signature placed right after the signed element's Issuer, as SAML requires.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import samlify from 'samlify'; // CommonJS: its named exports are getters, so take the whole object
import xmllint from '@authenio/samlify-node-xmllint';

const { SamlLib, Utility, Extractor, Constants } = samlify;

// Inbound AuthnRequests are checked against the SAML XSDs by xmllint compiled to JavaScript
// (no Java, no network, no native build). Wrapped so that its output (an empty line on stdout
// per run, the schema errors on stderr) stays out of the request log, and so that a rejected
// request is answered with xmllint's reason (samlify itself only says ERR_INVALID_XML).
const schemaErrors = new Map(); // rejected XML -> xmllint's complaint, until the handler reads it
samlify.setSchemaValidator({
  validate(xml) {
    const { write } = process.stdout;
    const { error } = console;
    let complaint = 'not valid against the SAML schemas';
    process.stdout.write = () => true;
    console.error = (...args) => {
      complaint = args.join(' ').replace(/^this is not a valid saml response with errors: /, '');
    };
    let result;
    try {
      result = xmllint.validate(xml); // runs synchronously; the promise is already settled
    } finally {
      process.stdout.write = write;
      console.error = error;
    }
    return result.catch((e) => {
      schemaErrors.set(xml, complaint);
      throw e;
    });
  },
});

const here = path.dirname(fileURLToPath(import.meta.url));
const readKey = (name) => fs.readFileSync(path.join(here, 'keys', name), 'utf8');
const KEYS = Object.fromEntries(
  [['primary', 'idp'], ['rollover', 'rollover'], ['rogue', 'rogue']].map(([option, file]) => {
    const pem = readKey(`${file}.crt`);
    return [option, { key: readKey(`${file}.key`), certPem: pem, cert: Utility.normalizeCerString(pem) }];
  }),
);

const BINDING_POST = Constants.namespace.binding.post;
const BINDING_REDIRECT = Constants.namespace.binding.redirect;
const EMAIL_FORMAT = 'urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress';
const ATTR_BASIC = 'urn:oasis:names:tc:SAML:2.0:attrname-format:basic';
const SIGN_OPTIONS = ['assertion', 'response', 'both', 'none'];
const COOKIE = 'idp_session';

let base = ''; // http://127.0.0.1:<port>, set once listening
let idps = null; // { plain, rollover }: the IdP entity, without and with the rollover certificate

// ---- the identity provider entity -------------------------------------------------------

function identityProvider(rollover) {
  return samlify.IdentityProvider({
    entityID: `${base}/metadata`,
    wantAuthnRequestsSigned: false,
    // Only the metadata uses these: Responses are signed with the key the session asks for.
    signingCert: rollover ? [KEYS.primary.certPem, KEYS.rollover.certPem] : KEYS.primary.certPem,
    privateKey: KEYS.primary.key,
    nameIDFormat: [EMAIL_FORMAT],
    singleSignOnService: [
      { Binding: BINDING_REDIRECT, Location: `${base}/sso` },
      { Binding: BINDING_POST, Location: `${base}/sso` },
    ],
  });
}

// ---- errors, cookies, forms -----------------------------------------------------------------

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function parseCookies(header = '') {
  const out = {};
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > 1 << 20) reject(new HttpError(413, 'body too large'));
      else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const htmlEscape = (s) =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

// The auto-submitting form real IdPs answer with (SAML HTTP-POST binding).
function postForm(acsUrl, samlResponse, relayState) {
  const relay = relayState // echoed only if given
    ? `<input type="hidden" name="RelayState" value="${htmlEscape(relayState)}"/>`
    : '';
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Signing in</title></head>
<body onload="document.forms[0].submit()">
<form method="post" action="${htmlEscape(acsUrl)}">
<input type="hidden" name="SAMLResponse" value="${htmlEscape(samlResponse)}"/>${relay}
<noscript><button type="submit">Continue</button></noscript>
</form>
</body></html>
`;
}

// ---- the session (the "logged-in user" and the options of the next Response) ----------------

function intField(fields, name, dflt) {
  const raw = fields.get(name);
  if (raw === null || raw === '') return dflt;
  if (!/^[-+]?\d+$/.test(raw.trim())) throw new HttpError(400, `${name} must be an integer (seconds)`);
  return Number(raw.trim());
}

function sessionFromForm(fields) {
  const email = (fields.get('email') || '').trim();
  if (!email) throw new HttpError(400, 'email is required');
  const sign = fields.get('sign') || 'assertion';
  if (!SIGN_OPTIONS.includes(sign)) throw new HttpError(400, `sign must be one of ${SIGN_OPTIONS.join(', ')}`);
  const key = fields.get('key') || 'primary';
  if (!KEYS[key]) throw new HttpError(400, `key must be one of ${Object.keys(KEYS).join(', ')}`);
  const algorithm = fields.get('algorithm') || 'sha256';
  if (!['sha256', 'sha1'].includes(algorithm)) throw new HttpError(400, 'algorithm must be sha256 or sha1');
  const digest = fields.get('digest') || '';
  if (!['', 'sha1'].includes(digest)) throw new HttpError(400, 'digest must be sha1 or absent');
  const encrypt = fields.get('encrypt') || '0';
  if (!['0', '1'].includes(encrypt)) throw new HttpError(400, 'encrypt must be 0 or 1');
  return {
    email,
    firstName: fields.get('first_name') || '',
    lastName: fields.get('last_name') || '',
    groups: (fields.get('groups') || '').split(',').map((g) => g.trim()).filter(Boolean),
    sign,
    key,
    notBeforeOffset: intField(fields, 'not_before_offset', 0),
    notOnOrAfterOffset: intField(fields, 'not_on_or_after_offset', 300),
    audience: fields.get('audience') || null,
    destination: fields.get('destination') || null,
    recipient: fields.get('recipient') || null,
    issuer: fields.get('issuer') || null,
    status: fields.get('status') || null,
    algorithm,
    digest,
    encrypt: encrypt === '1',
  };
}

function sessionFromCookie(req) {
  const raw = parseCookies(req.headers.cookie)[COOKIE];
  if (!raw) throw new HttpError(401, 'not logged in');
  try {
    const session = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
    if (!session || typeof session.email !== 'string') throw new Error('no email');
    return session;
  } catch {
    throw new HttpError(401, 'not logged in (bad idp_session cookie)');
  }
}

// ---- the service provider, found through its entity ID (= its metadata URL) ---------------

async function fetchServiceProvider(metadataUrl) {
  let url;
  try {
    url = new URL(metadataUrl);
  } catch {
    throw new HttpError(400, `SP entity ID is not a URL: ${metadataUrl}`);
  }
  if (url.protocol !== 'http:' || !['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) {
    throw new HttpError(400, `SP entity ID must be an http URL on loopback: ${metadataUrl}`);
  }
  let xml;
  try {
    const res = await fetch(url, { redirect: 'error', signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    xml = await res.text();
  } catch (e) {
    throw new HttpError(502, `cannot fetch SP metadata from ${metadataUrl}: ${e.message}`);
  }
  let sp;
  try {
    sp = samlify.ServiceProvider({ metadata: xml });
  } catch (e) {
    throw new HttpError(502, `bad SP metadata at ${metadataUrl}: ${e.message}`);
  }
  const entityId = sp.entityMeta.getEntityID();
  if (entityId !== metadataUrl) {
    throw new HttpError(400, `SP metadata at ${metadataUrl} has entityID ${entityId}`);
  }
  const list = sp.entityMeta.getAssertionConsumerService();
  const acs = (Array.isArray(list) ? list : list ? [list] : [])
    .filter((a) => a && a.binding === BINDING_POST && a.location);
  if (acs.length === 0) throw new HttpError(502, `SP metadata at ${metadataUrl} has no HTTP-POST AssertionConsumerService`);
  return { sp, entityId, acs };
}

// The default ACS: the one marked isDefault, else the lowest index, else the first.
function defaultAcs(acs) {
  const marked = acs.find((a) => a.isDefault === 'true');
  if (marked) return marked.location;
  const indexed = acs.filter((a) => a.index !== undefined).sort((a, b) => Number(a.index) - Number(b.index));
  return (indexed[0] || acs[0]).location;
}

// ---- building the Response --------------------------------------------------------------

// samlify's default login-response template, with an AuthnStatement (real IdPs send one, and
// SPs may require it) and without NotBefore on the bearer SubjectConfirmationData (forbidden by
// the SAML Web Browser SSO profile).
const RESPONSE_TEMPLATE = SamlLib.defaultLoginResponseTemplate.context.replace(
  '{AuthnStatement}',
  '<saml:AuthnStatement AuthnInstant="{IssueInstant}" SessionIndex="{SessionIndex}"><saml:AuthnContext>'
    + '<saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef>'
    + '</saml:AuthnContext></saml:AuthnStatement>',
);
const ATTRIBUTE_TEMPLATE = `<saml:Attribute Name="{Name}" NameFormat="${ATTR_BASIC}">{Values}</saml:Attribute>`;
const VALUE_TEMPLATE = '<saml:AttributeValue xsi:type="xs:string">{Value}</saml:AttributeValue>';

function attributeStatement(session) {
  const attrs = [['email', [session.email]]];
  if (session.firstName) attrs.push(['firstName', [session.firstName]]);
  if (session.lastName) attrs.push(['lastName', [session.lastName]]);
  if (session.groups.length) attrs.push(['groups', session.groups]);
  const xml = attrs.map(([name, values]) => {
    const valuesXml = values.map((v) => SamlLib.replaceTagsByValue(VALUE_TEMPLATE, { Value: v })).join('');
    return SamlLib.replaceTagsByValue(ATTRIBUTE_TEMPLATE, { Name: name }).replace('{Values}', () => valuesXml);
  }).join('');
  return `<saml:AttributeStatement>${xml}</saml:AttributeStatement>`;
}

// samlify takes the digest from the signature algorithm, through its exported table; a
// SHA-1 digest under RSA-SHA256 (what a misconfigured IdP sends) needs the table changed
// for one signing call. Signing is synchronous, so no other response sees the change.
function signWith(session, sign) {
  const table = Constants.algorithms.digest;
  const sha256 = Constants.algorithms.signature.RSA_SHA256;
  const saved = table[sha256];
  if (session.digest === 'sha1') table[sha256] = 'http://www.w3.org/2000/09/xmldsig#sha1';
  try {
    return sign();
  } finally {
    table[sha256] = saved;
  }
}

async function buildResponse({ idp, sp, session, acsUrl, audience, inResponseTo }) {
  const now = Date.now();
  const iso = (offsetSeconds) => new Date(now + offsetSeconds * 1000).toISOString();
  const gen = idp.entitySetting.generateID; // '_' + UUID
  let xml = SamlLib.replaceTagsByValue(RESPONSE_TEMPLATE, {
    ID: gen(),
    AssertionID: gen(),
    SessionIndex: gen(),
    Destination: session.destination || acsUrl,
    SubjectRecipient: session.recipient || acsUrl,
    Audience: session.audience || audience,
    Issuer: session.issuer || idp.entityMeta.getEntityID(),
    IssueInstant: iso(0),
    StatusCode: session.status ? `urn:oasis:names:tc:SAML:2.0:status:${session.status}` : Constants.StatusCode.Success,
    ConditionsNotBefore: iso(session.notBeforeOffset),
    ConditionsNotOnOrAfter: iso(session.notOnOrAfterOffset),
    SubjectConfirmationDataNotOnOrAfter: iso(session.notOnOrAfterOffset),
    NameIDFormat: EMAIL_FORMAT,
    NameID: session.email,
    InResponseTo: inResponseTo || undefined, // undefined drops the attribute (unsolicited)
  });
  xml = xml.replace('{AttributeStatement}', () => attributeStatement(session)); // a function: no $& patterns

  const signer = KEYS[session.key];
  const config = {
    privateKey: signer.key,
    signatureAlgorithm: session.algorithm === 'sha1'
      ? Constants.algorithms.signature.RSA_SHA1
      : Constants.algorithms.signature.RSA_SHA256,
    signingCert: signer.cert,
    isBase64Output: false,
  };
  // Sign the assertion, then encrypt it, then sign the whole message, so that a message
  // signature covers the encrypted form (samlify's own POST binding does this only with its
  // encryptThenSign option). The Signature elements go where samlify's POST binding puts them.
  if (session.sign === 'assertion' || session.sign === 'both') {
    xml = signWith(session, () => SamlLib.constructSAMLSignature({
      ...config,
      rawSamlMessage: xml,
      referenceTagXPath: "/*[local-name(.)='Response']/*[local-name(.)='Assertion']",
      signatureConfig: {
        prefix: 'ds',
        location: { reference: "/*[local-name(.)='Response']/*[local-name(.)='Assertion']/*[local-name(.)='Issuer']", action: 'after' },
      },
    }));
  }
  if (session.encrypt) {
    // The SP's encryption certificate if its metadata has one, else idp.crt (a test can then
    // decrypt with keys/idp.key).
    let encCert = sp.entityMeta.getX509Certificate('encryption');
    if (Array.isArray(encCert)) encCert = encCert[0];
    if (!encCert) encCert = KEYS.primary.cert;
    const source = { entitySetting: { ...idp.entitySetting, isAssertionEncrypted: true } };
    const target = { entityMeta: { getX509Certificate: () => encCert } };
    xml = Utility.base64Decode(await SamlLib.encryptAssertion(source, target, xml));
  }
  if (session.sign === 'response' || session.sign === 'both') {
    xml = signWith(session, () => SamlLib.constructSAMLSignature({
      ...config,
      rawSamlMessage: xml,
      isMessageSigned: true,
      signatureConfig: {
        prefix: 'ds',
        location: { reference: "/*[local-name(.)='Response']/*[local-name(.)='Issuer']", action: 'after' },
      },
    }));
  }
  return xml;
}

// ---- endpoints ---------------------------------------------------------------------------

async function handleLogin(req, res) {
  const type = (req.headers['content-type'] || '').split(';')[0].trim();
  if (type !== 'application/x-www-form-urlencoded') {
    throw new HttpError(415, 'POST /login takes application/x-www-form-urlencoded');
  }
  const session = sessionFromForm(new URLSearchParams(await readBody(req)));
  const value = Buffer.from(JSON.stringify(session)).toString('base64url');
  res.writeHead(204, { 'Set-Cookie': `${COOKIE}=${value}; Path=/; HttpOnly; SameSite=Lax` });
  res.end();
  return `login ${session.email} sign=${session.sign} key=${session.key}${session.encrypt ? ' encrypt' : ''}`;
}

async function handleSso(req, res, binding, params) {
  const session = sessionFromCookie(req);
  const samlRequest = params.get('SAMLRequest');
  if (!samlRequest) throw new HttpError(400, 'SAMLRequest is missing');
  const relayState = params.get('RelayState');

  let requestXml;
  try {
    requestXml = binding === 'redirect' ? Utility.inflateString(samlRequest) : Utility.base64Decode(samlRequest);
  } catch (e) {
    throw new HttpError(400, `SAMLRequest is not ${binding === 'redirect' ? 'deflated ' : ''}base64: ${e.message}`);
  }
  let peek;
  try {
    peek = Extractor.extract(requestXml, Extractor.loginRequestFields);
  } catch (e) {
    throw new HttpError(400, `SAMLRequest is not XML: ${e.message}`);
  }
  if (!peek.issuer || typeof peek.issuer !== 'string') throw new HttpError(400, 'AuthnRequest has no Issuer');
  const { sp, entityId, acs } = await fetchServiceProvider(peek.issuer);

  const idp = idps.plain;
  let parsed;
  try {
    parsed = await idp.parseLoginRequest(sp, binding, binding === 'redirect'
      ? { query: { SAMLRequest: samlRequest, RelayState: relayState } }
      : { body: { SAMLRequest: samlRequest, RelayState: relayState } });
  } catch (e) {
    const complaint = schemaErrors.get(requestXml);
    schemaErrors.delete(requestXml);
    throw new HttpError(400, `bad AuthnRequest: ${complaint || e.message || e}`);
  }
  const request = parsed.extract.request || {};
  if (!request.id) throw new HttpError(400, 'AuthnRequest has no ID');
  if (request.destination && request.destination !== `${base}/sso`) {
    throw new HttpError(400, `AuthnRequest Destination ${request.destination} is not ${base}/sso`);
  }
  // The ACS asked for, if the SP's metadata lists it (for HTTP-POST), else the SP's default.
  const asked = request.assertionConsumerServiceUrl;
  const acsUrl = asked && acs.some((a) => a.location === asked) ? asked : defaultAcs(acs);

  const xml = await buildResponse({ idp, sp, session, acsUrl, audience: entityId, inResponseTo: request.id });
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(postForm(acsUrl, Utility.base64Encode(xml), relayState));
  return `response to ${entityId} for ${session.email} InResponseTo=${request.id} -> ${acsUrl}`;
}

async function handleInitiate(req, res, params) {
  const session = sessionFromCookie(req);
  const spUrl = params.get('sp');
  if (!spUrl) throw new HttpError(400, 'sp (the SP metadata URL) is missing');
  const { sp, entityId, acs } = await fetchServiceProvider(spUrl);
  const acsUrl = defaultAcs(acs);
  const xml = await buildResponse({ idp: idps.plain, sp, session, acsUrl, audience: entityId, inResponseTo: null });
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(postForm(acsUrl, Utility.base64Encode(xml), params.get('relay_state')));
  return `unsolicited response to ${entityId} for ${session.email} -> ${acsUrl}`;
}

async function route(req, res) {
  const url = new URL(req.url, base);
  const p = url.pathname;
  const method = req.method === 'HEAD' ? 'GET' : req.method; // node sends no body for HEAD
  if (method === 'GET' && p === '/health') {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('ok');
    return '';
  }
  if (method === 'GET' && p === '/metadata') {
    const rollover = url.searchParams.get('rollover') === '1';
    res.writeHead(200, { 'Content-Type': 'application/samlmetadata+xml' });
    res.end((rollover ? idps.rollover : idps.plain).getMetadata());
    return rollover ? 'rollover' : '';
  }
  if (method === 'POST' && p === '/login') return handleLogin(req, res);
  if (method === 'GET' && p === '/sso') return handleSso(req, res, 'redirect', url.searchParams);
  if (method === 'POST' && p === '/sso') {
    return handleSso(req, res, 'post', new URLSearchParams(await readBody(req)));
  }
  if (method === 'GET' && p === '/initiate') return handleInitiate(req, res, url.searchParams);
  throw new HttpError(404, `no route for ${req.method} ${p}`);
}

const server = http.createServer(async (req, res) => {
  let note;
  try {
    note = await route(req, res);
  } catch (e) {
    const status = e instanceof HttpError ? e.status : 500;
    note = e instanceof HttpError ? e.message : `internal error: ${e && e.stack ? e.stack : e}`;
    if (!res.headersSent) {
      res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(`${e instanceof HttpError ? e.message : 'internal error'}\n`);
    } else {
      res.end();
    }
  }
  const line = `${req.method} ${req.url.split('?')[0]} ${res.statusCode}${note ? ` ${note}` : ''}`;
  console.log(line.replace(/\n/g, ' | '));
});

// The first xmllint run takes seconds (it sets up its compiled code): pay that before listening,
// so that /health answering means ready.
await SamlLib.isValidXml(
  '<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"'
    + ' ID="_warmup" Version="2.0" IssueInstant="2000-01-01T00:00:00Z"><saml:Issuer>warmup</saml:Issuer></samlp:AuthnRequest>',
);

const port = Number(process.argv[2] || 0);
// Say why and stop, rather than throw: node-xmllint rethrows uncaught exceptions from its own
// handler, and node then prints its 1 MB one-line source as the place of the error.
server.on('error', (e) => {
  console.error(`saml idp: ${e.message}`);
  process.exit(1);
});
server.listen(port, '127.0.0.1', () => {
  base = `http://127.0.0.1:${server.address().port}`;
  // samlify warns that there is no SingleLogoutService: this IdP has none, on purpose.
  const warn = console.warn;
  console.warn = () => {};
  idps = { plain: identityProvider(false), rollover: identityProvider(true) };
  console.warn = warn;
  console.log(`saml idp listening on ${base} (entity ID ${base}/metadata)`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
