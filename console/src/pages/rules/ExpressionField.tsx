import { expressionSpan, lineColumn } from "../../api/errors";
import { Field } from "../../shell/forms";

/**
 * A condition or formula editor. An error that names a token shows where: the line of the
 * source with a caret under the token, and its line and column.
 */
export function ExpressionField({ label, value, onChange, error, metadata, hint }: {
  label: string;
  value: string;
  onChange: (value: string) => void;
  error?: string;
  metadata?: Record<string, string>;
  hint?: string;
}) {
  const span = error ? expressionSpan(error, metadata) : null;
  const at = span ? lineColumn(value, span.start) : null;
  const line = at ? value.split("\n")[at.line - 1] ?? "" : "";
  return (
    <div className="code-editor">
      <Field label={label} error={error} hint={hint}>
        {(p) => <textarea {...p} className="code" spellCheck={false} rows={2} value={value}
                          onChange={(e) => onChange(e.target.value)} />}
      </Field>
      {at && span ? (
        <div data-testid="expression-error-position">
          <small>Line {at.line}, column {at.column}:</small>
          <pre className="caret-line">{line}{"\n"}{" ".repeat(at.column - 1)}{"^".repeat(Math.max(1, Math.min(span.end, span.start + line.length) - span.start))}</pre>
        </div>
      ) : null}
    </div>
  );
}
