// pg's own parameter encoding (pg/lib/utils.js, exported by the package; @types/pg does not declare it).
declare module 'pg/lib/utils.js' {
  const utils: {
    /** A JS value as pg sends it as a parameter: text (arrays as array literals, objects as JSON), a Buffer, or null. */
    prepareValue(value: unknown): string | Buffer | null;
    /** A string as a quoted SQL literal (E'…' when it holds backslashes). */
    escapeLiteral(value: string): string;
  };
  export default utils;
}
