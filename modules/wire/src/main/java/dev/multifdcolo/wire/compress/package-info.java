/**
 * multifd page compression (PROTOCOL.md §6): {@link dev.multifdcolo.wire.compress.PageDecompressor}
 * for the receiving channel threads, {@link dev.multifdcolo.wire.compress.PageCompressor} for a
 * sender. One instance per multifd channel, holding that channel's continuous zlib or zstd stream.
 */
package dev.multifdcolo.wire.compress;
