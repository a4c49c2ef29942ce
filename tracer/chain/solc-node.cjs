#!/usr/bin/env node
// A solc stand-in for py-solc-x built on npm `solc` (solc-js), for machines without a native solc.
//
// It answers the two calls py-solc-x makes: `--version` (printed like the native compiler, which is
// what py-solc-x parses) and `--standard-json` (JSON input on stdin, JSON output on stdout). The
// `solcjs` CLI is not used: it cuts piped output at 64 KiB and prints a non-JSON line before it.
// Imports resolve from the project's node_modules (`@openzeppelin/...`) and the project root.
'use strict';

const fs = require('fs');
const path = require('path');

const PROJECT_ROOT = path.resolve(__dirname, '..', '..');
const NODE_MODULES = path.join(PROJECT_ROOT, 'node_modules');

function loadSolc() {
    try {
        return require(require.resolve('solc', { paths: [PROJECT_ROOT, __dirname] }));
    } catch (err) {
        process.stderr.write(`solc-node: npm package "solc" not found under ${NODE_MODULES}; run npm install\n`);
        process.exit(2);
    }
}

function findImport(name) {
    // Refuse names that climb out of the search roots.
    if (path.isAbsolute(name) || name.split('/').includes('..')) {
        return { error: `import outside the project refused: ${name}` };
    }
    for (const base of [NODE_MODULES, PROJECT_ROOT]) {
        const candidate = path.join(base, name);
        if (fs.existsSync(candidate) && fs.statSync(candidate).isFile()) {
            return { contents: fs.readFileSync(candidate, 'utf8') };
        }
    }
    return { error: `file not found in ${NODE_MODULES} or ${PROJECT_ROOT}: ${name}` };
}

function writeAll(text) {
    // fs.writeSync on fd 1 blocks until everything is written, even into a pipe.
    const buffer = Buffer.from(text, 'utf8');
    let offset = 0;
    while (offset < buffer.length) {
        try {
            offset += fs.writeSync(1, buffer, offset, buffer.length - offset);
        } catch (err) {
            if (err.code !== 'EAGAIN') throw err;
        }
    }
}

function main(argv) {
    const solc = loadSolc();
    if (argv.includes('--version')) {
        writeAll(`solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`);
        return 0;
    }
    if (argv.includes('--standard-json')) {
        const input = fs.readFileSync(0, 'utf8');
        writeAll(solc.compile(input, { import: findImport }));
        writeAll('\n');
        return 0;
    }
    process.stderr.write('usage: solc-node.cjs --version | --standard-json < input.json\n');
    return 2;
}

process.exitCode = main(process.argv.slice(2));
