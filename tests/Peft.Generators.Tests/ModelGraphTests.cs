using System.Collections;
using System.Collections.Immutable;
using System.Reflection;
using Microsoft.CodeAnalysis;
using Peft.Generators;
using Peft.Generators.Model;

namespace Peft.Generators.Tests;

/// <summary>
/// Pipeline outputs must not hold compiler objects (they would defeat caching and keep compilations alive),
/// as in System.Text.Json's SourceGenModelDoesNotEncapsulateSymbolsOrCompilationData.
/// </summary>
public class ModelGraphTests
{
    private static readonly Type[] s_forbidden =
    {
        typeof(ISymbol), typeof(SyntaxNode), typeof(SyntaxTree), typeof(Compilation), typeof(SemanticModel),
        typeof(Location), typeof(AttributeData), typeof(SyntaxReference),
    };

    private const BindingFlags InstanceFields = BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic;

    [Fact]
    public void ModelTypesCannotHoldCompilerObjects()
    {
        var visited = new HashSet<Type>();
        var problems = new List<string>();
        Walk(typeof(PeftClassModel), "PeftClassModel", visited, problems);

        Assert.True(problems.Count == 0, string.Join(Environment.NewLine, problems));
        // The walk really reached the nested records (a walker that stops early would pass vacuously).
        Assert.Superset(
            new HashSet<Type>
            {
                typeof(PeftClassModel), typeof(HierarchyInfo), typeof(TypeDeclarationInfo), typeof(MemberModel),
                typeof(AdapterModel), typeof(LayerInfo), typeof(EquatableArray<MemberModel>),
            },
            visited);
    }

    [Fact]
    public void WalkerRejectsATypeThatHoldsASymbol()
    {
        var problems = new List<string>();
        Walk(typeof(LeakyModel), "LeakyModel", new HashSet<Type>(), problems);

        Assert.Contains(problems, p => p.Contains("Symbol"));
        Assert.Contains(problems, p => p.Contains("Payload"));
    }

    [Fact]
    public void TrackedStepOutputsHoldNoCompilerObjects()
    {
        var compilation = TestCompilation.Create(Sources.All.Select(c => c.Source).ToArray());
        var result = TestCompilation.CreateDriver().RunGenerators(compilation).GetRunResult().Results[0];

        int values = 0;
        foreach (string step in PeftTrackingNames.All)
        {
            // A stream whose attribute is never a class's first annotation yields nothing here (see IncrementalTests).
            if (!result.TrackedSteps.TryGetValue(step, out var runs)) continue;
            foreach (var run in runs)
            {
                foreach (var (value, _) in run.Outputs)
                {
                    values++;
                    AssertNoCompilerObjects(value, step, new HashSet<object>(ReferenceEqualityComparer.Instance));
                }
            }
        }
        Assert.True(values > 10, $"only {values} step outputs inspected");
    }

    /// <summary>Static walk of the types reachable through instance fields (records, EquatableArray's backing array, nullables).</summary>
    private static void Walk(Type type, string path, HashSet<Type> visited, List<string> problems)
    {
        if (s_forbidden.Any(f => f.IsAssignableFrom(type)))
        {
            problems.Add($"{path}: {type.Name} is a compiler object");
            return;
        }
        if (type == typeof(object) || type.IsInterface || (type.IsAbstract && !type.IsSealed && type != typeof(Array)))
        {
            problems.Add($"{path}: {type.Name} could hold anything");
            return;
        }
        if (type.IsPrimitive || type.IsEnum || type == typeof(string) || type == typeof(decimal)) return;
        if (!visited.Add(type)) return;

        if (type.IsArray)
        {
            Walk(type.GetElementType()!, path + "[]", visited, problems);
            return;
        }
        if (Nullable.GetUnderlyingType(type) is { } underlying)
        {
            Walk(underlying, path + "?", visited, problems);
            return;
        }
        foreach (var field in type.GetFields(InstanceFields))
        {
            Walk(field.FieldType, path + "." + field.Name, visited, problems);
        }
    }

    /// <summary>Dynamic walk of an actual pipeline value.</summary>
    private static void AssertNoCompilerObjects(object? value, string path, HashSet<object> seen)
    {
        if (value is null) return;
        var type = value.GetType();
        Assert.False(s_forbidden.Any(f => f.IsInstanceOfType(value)), $"{path} holds a {type.Name}");
        if (type.IsPrimitive || type.IsEnum || value is string || value is decimal) return;
        if (!type.IsValueType && !seen.Add(value)) return;

        if (value is IEnumerable sequence and not string)
        {
            int i = 0;
            foreach (var item in sequence) AssertNoCompilerObjects(item, $"{path}[{i++}]", seen);
        }
        if (value is Array) return;
        foreach (var field in type.GetFields(InstanceFields))
        {
            if (type.IsGenericType && type.GetGenericTypeDefinition() == typeof(ImmutableArray<>)) break;
            AssertNoCompilerObjects(field.GetValue(value), path + "." + field.Name, seen);
        }
    }

    private sealed record LeakyModel(string Name, ISymbol Symbol, object Payload);
}
