using System.Text;

namespace Peft.Generators.Emit;

/// <summary>A minimal indenting text builder. Lines end with '\n' on every platform so output is deterministic.</summary>
internal sealed class SourceWriter
{
    private const string IndentUnit = "    ";
    private readonly StringBuilder _builder = new();
    private int _indent;

    public void Indent() => _indent++;

    public void Unindent() => _indent--;

    public void Line() => _builder.Append('\n');

    public void Line(string text)
    {
        for (int i = 0; i < _indent; i++) _builder.Append(IndentUnit);
        _builder.Append(text).Append('\n');
    }

    public void OpenBrace()
    {
        Line("{");
        Indent();
    }

    public void CloseBrace(string suffix = "")
    {
        Unindent();
        Line("}" + suffix);
    }

    public override string ToString() => _builder.ToString();
}
