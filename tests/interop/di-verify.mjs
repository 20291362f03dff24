// An independent Data Integrity verifier for tests/e2e/di_interop.rs: Digital Bazaar's
// `@digitalbazaar/vc` with the `eddsa-rdfc-2022` cryptosuite, and a static document loader
// that holds only the standard contexts (VC 2.0, Data Integrity, Multikey) and the DID
// documents the test hands it. It never fetches: a credential that needs any other
// context fails here as it would for a verifier with pinned contexts.
//
// stdin: {"credential": {...}, "dids": {"did:…": <DID document>}}
// stdout: {"verified": bool, "error": "…"}
import * as vc from '@digitalbazaar/vc';
import {DataIntegrityProof} from '@digitalbazaar/data-integrity';
import {cryptosuite as eddsaRdfc2022} from '@digitalbazaar/eddsa-rdfc-2022-cryptosuite';
import {contexts as credentialsContexts} from '@digitalbazaar/credentials-context';
import {contexts as dataIntegrityContexts} from '@digitalbazaar/data-integrity-context';
import {contexts as multikeyContexts} from '@digitalbazaar/multikey-context';

const input = JSON.parse(await new Promise(resolve => {
  let text = '';
  process.stdin.on('data', chunk => text += chunk);
  process.stdin.on('end', () => resolve(text));
}));

const VC2 = 'https://www.w3.org/ns/credentials/v2';
const contexts = new Map([
  [VC2, credentialsContexts.get(VC2)],
  ...dataIntegrityContexts,
  ...multikeyContexts,
]);

function documentLoader(url) {
  if(contexts.has(url)) {
    return {contextUrl: null, documentUrl: url, document: contexts.get(url)};
  }
  const [did, fragment] = url.split('#');
  const doc = input.dids[did];
  if(doc && fragment === undefined) {
    return {contextUrl: null, documentUrl: url, document: doc};
  }
  const method = doc && (doc.verificationMethod || []).find(m => m.id === url ||
    (m.id.startsWith('#') && did + m.id === url));
  if(method) {
    const document = {'@context': 'https://w3id.org/security/multikey/v1', ...method, id: url};
    return {contextUrl: null, documentUrl: url, document};
  }
  throw new Error(`the static document loader has no ${url}`);
}

const suite = new DataIntegrityProof({cryptosuite: eddsaRdfc2022});
let answer;
try {
  const result = await vc.verifyCredential({
    credential: input.credential,
    suite,
    documentLoader,
    // Status is the node's own test's concern; this one is about the proof.
    checkStatus: async () => ({verified: true}),
  });
  const errors = [result.error, ...(result.results || []).map(r => r.error)]
    .filter(Boolean)
    .map(e => (e.errors || [e]).map(x => x.message).join('; '));
  answer = {verified: result.verified, error: errors.join('; ')};
} catch(e) {
  answer = {verified: false, error: String(e && e.message || e)};
}
process.stdout.write(JSON.stringify(answer));
