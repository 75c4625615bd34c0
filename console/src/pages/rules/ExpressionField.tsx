import type { ExpressionPosition } from "../../api/errors";
import { Field } from "../../shell/forms";

/**
 * A condition or formula editor. An error the API locates shows where: the line of the
 * source with a caret under the token, and its line and column.
 */
export function ExpressionField({ label, value, onChange, error, position, hint }: {
  label: string;
  value: string;
  onChange: (value: string) => void;
  error?: string;
  position?: ExpressionPosition;
  hint?: string;
}) {
  // Code points, as the API counts them.
  const line = position ? Array.from(value.split("\n")[position.line - 1] ?? "") : [];
  const width = position ? Math.max(1, position.end - position.start) : 0;
  return (
    <div className="code-editor">
      <Field label={label} error={error} hint={hint}>
        {(p) => <textarea {...p} className="code" spellCheck={false} rows={2} value={value}
                          onChange={(e) => onChange(e.target.value)} />}
      </Field>
      {error && position ? (
        <div data-testid="expression-error-position">
          <small>Line {position.line}, column {position.column}:</small>
          <pre className="caret-line">{line.join("")}{"\n"}{" ".repeat(position.column - 1)}{"^".repeat(Math.min(width, Math.max(1, line.length - position.column + 2)))}</pre>
        </div>
      ) : null}
    </div>
  );
}
