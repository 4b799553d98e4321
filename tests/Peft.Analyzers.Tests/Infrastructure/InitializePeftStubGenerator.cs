using System.Text;
using Microsoft.CodeAnalysis;
using Peft.Generators.Model;
using Peft.Generators.Parsing;

namespace Peft.Analyzers.Tests.Infrastructure;

/// <summary>
/// Stands in for the real generator in analyzer tests: for every partial module class with Peft attributes it declares
/// an empty <c>private void InitializePeft()</c>, so test sources can call it exactly as user code does and the tests can
/// insist on zero compiler errors. It uses the shared parser, so it agrees with the analyzer on which classes qualify.
/// No [Generator] attribute: the test harness creates it by type, and nothing should load it as a compiler extension.
/// </summary>
public sealed class InitializePeftStubGenerator : IIncrementalGenerator
{
    /// <inheritdoc />
    public void Initialize(IncrementalGeneratorInitializationContext context)
    {
        var models = context.CompilationProvider.Select((compilation, ct) =>
        {
            var result = new List<PeftClassModel>();
            foreach (var tree in compilation.SyntaxTrees)
            {
                var semanticModel = compilation.GetSemanticModel(tree);
                foreach (var node in tree.GetRoot(ct).DescendantNodes().OfType<Microsoft.CodeAnalysis.CSharp.Syntax.ClassDeclarationSyntax>())
                {
                    if (semanticModel.GetDeclaredSymbol(node, ct) is not INamedTypeSymbol type) continue;
                    if (!HasPeftAttribute(type)) continue;
                    if (PeftParser.Parse(type, compilation, ct) is { IsPartial: true, IsModule: true } model
                        && !result.Any(m => m.Hierarchy == model.Hierarchy))
                    {
                        result.Add(model);
                    }
                }
            }
            return result;
        });

        context.RegisterSourceOutput(models, (output, list) =>
        {
            foreach (var model in list) output.AddSource(model.Hierarchy.HintName, Emit(model));
        });
    }

    private static bool HasPeftAttribute(INamedTypeSymbol type)
    {
        static bool IsPeft(AttributeData a) => KnownNames.AllAttributes.Any(n => PeftParser.Is(a, n));
        return type.GetAttributes().Any(IsPeft)
            || type.GetMembers().Any(m => m is IFieldSymbol or IPropertySymbol && m.GetAttributes().Any(IsPeft));
    }

    private static string Emit(PeftClassModel model)
    {
        var text = new StringBuilder();
        if (model.Hierarchy.Namespace.Length > 0) text.Append("namespace ").Append(model.Hierarchy.Namespace).Append(" {\n");
        foreach (var type in model.Hierarchy.Types)
        {
            text.Append("partial ").Append(type.Keyword).Append(' ').Append(type.Name).Append(type.TypeParameterList).Append(" {\n");
        }
        text.Append("private void InitializePeft() { }\n");
        foreach (var _ in model.Hierarchy.Types) text.Append("}\n");
        if (model.Hierarchy.Namespace.Length > 0) text.Append("}\n");
        return text.ToString();
    }
}
