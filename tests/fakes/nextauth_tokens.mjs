// Session tokens made (and read) by the real next-auth v4 and @auth/core (Auth.js v5) code, for tests/test_nextauth.py.
// Setup: cd DIR && npm install --legacy-peer-deps next-auth@4.24.15 @auth/core@0.41.3
// Encode: NODE_PATH=DIR/node_modules node nextauth_tokens.mjs encode SECRET EMAIL  -> JSON of tokens
//         (nextauth_tokens.json was made this way with the secret and e-mail the tests use)
// Decode: ... nextauth_tokens.mjs decode SECRET < {"v4": token, "v5": token, "salt": cookie name} -> claims
import { createRequire } from "node:module"
import path from "node:path"

const require = createRequire(path.join(process.env.NODE_PATH, "noop.js"))
const v4 = require("next-auth/jwt")
const v5 = await import(path.join(process.env.NODE_PATH, "@auth/core/jwt.js"))

const [mode, secret, email] = process.argv.slice(2)
const salt = "authjs.session-token"
if (mode === "encode") {
  const token = { name: "Ada", email, sub: "user-1" }
  const long = 80 * 365 * 24 * 3600 // fixtures outlive the test suite
  console.log(JSON.stringify({
    v4_valid: await v4.encode({ token, secret, maxAge: long }),
    v4_expired: await v4.encode({ token, secret, maxAge: -3600 }),
    v5_valid: await v5.encode({ token, secret, salt, maxAge: long }),
    v5_expired: await v5.encode({ token, secret, salt, maxAge: -3600 }),
    v5_secure_valid: await v5.encode({ token, secret, salt: "__Secure-" + salt, maxAge: long }),
  }, null, 2))
} else {
  let input = ""
  for await (const chunk of process.stdin) input += chunk
  const given = JSON.parse(input)
  console.log(JSON.stringify({
    v4: await v4.decode({ token: given.v4, secret }),
    v5: await v5.decode({ token: given.v5, secret, salt: given.salt ?? salt }),
  }))
}
