using Peft.Targeting;
using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Diagnostics;
using Microsoft.CodeAnalysis.Operations;
using Peft.Analyzers.Diagnostics;
using Peft.Generators.Model;
using Peft.Generators.Parsing;

namespace Peft.Analyzers;

/// <summary>
/// PEFT0018: a constant <c>TargetModules.Names("...")</c> entry, passed inline to <c>model.ApplyTargets(new PeftTargets(...))</c>
/// or <c>ResolveTargets</c> (as <c>Targets</c> or <c>Exclude</c>), that names no module of the receiver's static type. The
/// module tree is read from the source: fields of module classes (the names generated code and <c>RegisterComponents()</c>
/// register, plus constant <c>register_module</c> names), <c>ModuleList&lt;T&gt;</c> elements (any index), and members built
/// with TorchSharp layers. Nothing is reported when part of the tree is not visible (a type from another assembly, a member
/// typed <c>Module&lt;Tensor, Tensor&gt;</c> assigned something the compiler cannot see, a non-constant registered name, a
/// receiver or member typed as a class that is not sealed, since a subclass may register more modules): an unknown name
/// then stays a run-time <c>PeftConfigurationException</c>.
/// </summary>
[DiagnosticAnalyzer(LanguageNames.CSharp)]
public sealed class TargetNamesAnalyzer : DiagnosticAnalyzer
{
    private const string TargetingType = "Peft.PeftTargeting";
    private const string TargetsType = "Peft.PeftTargets";
    private const string TargetModulesType = "Peft.TargetModules";
    private const string ModuleListType = "TorchSharp.Modules.ModuleList";
    private const int MaxDepth = 32;

    /// <summary>TorchSharp layers without registered children that a target could name.</summary>
    private static readonly ImmutableHashSet<string> LeafLayers = ImmutableHashSet.Create(
        "Linear", "Embedding", "LayerNorm", "Dropout", "ReLU", "GELU", "SiLU", "Tanh", "Sigmoid", "Softmax", "Identity",
        "RMSNorm", "Conv1d", "Conv2d", "BatchNorm1d", "BatchNorm2d", "GroupNorm", "Bilinear", "Mish", "LeakyReLU", "ELU");

    /// <inheritdoc />
    public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics => ImmutableArray.Create(DiagnosticDescriptors.UnknownTargetName);

    /// <inheritdoc />
    public override void Initialize(AnalysisContext context)
    {
        context.EnableConcurrentExecution();
        context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
        context.RegisterOperationAction(Analyze, OperationKind.Invocation);
    }

    private static void Analyze(OperationAnalysisContext context)
    {
        var invocation = (IInvocationOperation)context.Operation;
        var method = invocation.TargetMethod;
        if (method.Name is not ("ApplyTargets" or "ResolveTargets") || method.ContainingType?.ToDisplayString() != TargetingType) return;
        if (invocation.Arguments.Length < 2) return;
        var receiver = Strip(invocation.Arguments[0].Value);
        if (receiver.Type is not INamedTypeSymbol rootType) return;

        var entries = new List<(string Entry, Location Location, string Role)>();
        CollectEntries(Strip(invocation.Arguments[1].Value), entries);
        if (entries.Count == 0) return;

        // The static type says which members exist only when no subclass can add more: a sealed class, or an object
        // created right here (new Model().ApplyTargets(...)).
        bool exactRoot = rootType.IsSealed || receiver is IObjectCreationOperation;
        var tree = new ModuleTree(context.Compilation, context.CancellationToken);
        if (!exactRoot || !tree.Build(rootType)) return; // part of the tree is not visible: leave it to the run-time check

        foreach (var (entry, location, role) in entries)
        {
            if (tree.Matches(entry)) continue;
            context.ReportDiagnostic(Diagnostic.Create(
                DiagnosticDescriptors.WithDocs(context.Options)[PeftDiagnosticIds.UnknownTargetName], location, role, entry, rootType.Name, tree.Suggest(entry)));
        }
    }

    private static IOperation Strip(IOperation operation)
    {
        while (operation is IConversionOperation conversion) operation = conversion.Operand;
        return operation;
    }

    /// <summary>Constant entries of <c>TargetModules.Names(...)</c> in <c>new PeftTargets(targets, ...) { Exclude = ... }</c> (or a <c>with</c> of one).</summary>
    private static void CollectEntries(IOperation operation, List<(string, Location, string)> entries)
    {
        switch (operation)
        {
            case IWithOperation with:
                CollectEntries(Strip(with.Operand), entries);
                if (with.Initializer is { } withInitializer) CollectInitializer(withInitializer, entries);
                break;
            case IObjectCreationOperation creation when creation.Type?.ToDisplayString() == TargetsType:
                if (creation.Arguments.Length > 0) CollectNames(Strip(creation.Arguments[0].Value), "target_modules", entries);
                if (creation.Initializer is { } initializer) CollectInitializer(initializer, entries);
                break;
        }
    }

    private static void CollectInitializer(IObjectOrCollectionInitializerOperation initializer, List<(string, Location, string)> entries)
    {
        foreach (var item in initializer.Initializers)
        {
            if (item is ISimpleAssignmentOperation { Target: IPropertyReferenceOperation property } assignment)
            {
                if (property.Property.Name == "Targets") CollectNames(Strip(assignment.Value), "target_modules", entries);
                else if (property.Property.Name == "Exclude") CollectNames(Strip(assignment.Value), "exclude_modules", entries);
            }
        }
    }

    private static void CollectNames(IOperation operation, string role, List<(string, Location, string)> entries)
    {
        if (operation is not IInvocationOperation { TargetMethod.Name: "Names" } names
            || names.TargetMethod.ContainingType?.ToDisplayString() != TargetModulesType) return;
        foreach (var argument in names.Arguments)
        {
            IEnumerable<IOperation> values = Strip(argument.Value) is IArrayCreationOperation { Initializer: { } array }
                ? array.ElementValues
                : new[] { argument.Value };
            foreach (var value in values)
            {
                if (value.ConstantValue is { HasValue: true, Value: string entry } && entry.Length > 0)
                {
                    entries.Add((entry, value.Syntax.GetLocation(), role));
                }
            }
        }
    }

    /// <summary>The registered module paths under a root type, as segment lists ("*" for a ModuleList index).</summary>
    private sealed class ModuleTree
    {
        private readonly Compilation _compilation;
        private readonly CancellationToken _cancellationToken;
        private readonly List<string[]> _paths = new();
        private readonly HashSet<string> _names = new(StringComparer.Ordinal);

        public ModuleTree(Compilation compilation, CancellationToken cancellationToken)
        {
            _compilation = compilation;
            _cancellationToken = cancellationToken;
        }

        /// <summary>False when part of the tree cannot be seen.</summary>
        public bool Build(INamedTypeSymbol root) => IsSourceModule(root) && Visit(root, Array.Empty<string>(), 0, ImmutableHashSet<string>.Empty);

        private static bool IsSourceModule(INamedTypeSymbol type)
            => type.TypeKind == TypeKind.Class && type.DeclaringSyntaxReferences.Length > 0 && PeftParser.DerivesFrom(type, KnownNames.Module);

        private bool Visit(INamedTypeSymbol type, string[] prefix, int depth, ImmutableHashSet<string> onPath)
        {
            _cancellationToken.ThrowIfCancellationRequested();
            string key = type.OriginalDefinition.ToDisplayString();
            if (depth > MaxDepth || onPath.Contains(key)) return false;
            onPath = onPath.Add(key);
            if (!RegisteredNamesAreConstant(type, out var extraNames)) return false;
            foreach (var extra in extraNames)
            {
                if (!type.GetMembers(extra).Any()) return false; // registered under a name that is not a field: unknown module
            }

            for (var t = type; t is not null && t.DeclaringSyntaxReferences.Length > 0; t = t.BaseType)
            {
                var model = PeftParser.Parse(t.OriginalDefinition, _compilation, _cancellationToken);
                if (model is null) return false;
                foreach (var member in model.Members)
                {
                    if (member.Component != ComponentKind.Module) continue;
                    var symbol = t.GetMembers(member.Name).FirstOrDefault();
                    var memberType = symbol switch
                    {
                        IFieldSymbol f => f.Type,
                        IPropertySymbol p => p.Type,
                        _ => null,
                    };
                    if (memberType is not INamedTypeSymbol named) return false;
                    if (!VisitMember(named, member.Layer, Append(prefix, member.Name), depth, onPath)) return false;
                }
            }
            return true;
        }

        private bool VisitMember(INamedTypeSymbol type, LayerInfo? layer, string[] path, int depth, ImmutableHashSet<string> onPath)
        {
            Add(path);
            // A member typed as a non-sealed class may hold a subclass with more modules: not visible.
            if (IsSourceModule(type)) return type.IsSealed && Visit(type, path, depth + 1, onPath);
            if (PeftParser.DerivesFrom(type, ModuleListType) && type.TypeArguments.Length == 1 && type.TypeArguments[0] is INamedTypeSymbol element)
            {
                return VisitMember(element, null, Append(path, "*"), depth + 1, onPath);
            }
            if (type.ContainingAssembly?.Name == "TorchSharp")
            {
                if (LeafLayers.Contains(type.Name)) return true;
                // Module<Tensor, Tensor> / nn.Module: only a visible TorchSharp layer call says what it holds.
                return (type.Name == "Module") && layer is not null;
            }
            return false;
        }

        /// <summary>Names passed to <c>register_module</c> in the class; false when one is not a constant.</summary>
        private bool RegisteredNamesAreConstant(INamedTypeSymbol type, out List<string> names)
        {
            names = new List<string>();
            foreach (var reference in type.DeclaringSyntaxReferences)
            {
                var syntax = reference.GetSyntax(_cancellationToken);
                var semanticModel = _compilation.GetSemanticModel(syntax.SyntaxTree);
                foreach (var call in syntax.DescendantNodes().OfType<InvocationExpressionSyntax>())
                {
                    string? called = call.Expression switch
                    {
                        IdentifierNameSyntax id => id.Identifier.ValueText,
                        MemberAccessExpressionSyntax access => access.Name.Identifier.ValueText,
                        _ => null,
                    };
                    if (called is not ("register_module" or "add_module") || call.ArgumentList.Arguments.Count == 0) continue;
                    var constant = semanticModel.GetConstantValue(call.ArgumentList.Arguments[0].Expression, _cancellationToken);
                    if (!constant.HasValue || constant.Value is not string name) return false;
                    names.Add(name);
                }
            }
            return true;
        }

        private void Add(string[] path)
        {
            _paths.Add(path);
            _names.Add(path[path.Length - 1]);
        }

        private static string[] Append(string[] prefix, string segment)
        {
            var result = new string[prefix.Length + 1];
            Array.Copy(prefix, result, prefix.Length);
            result[prefix.Length] = segment;
            return result;
        }

        /// <summary>PEFT's list rule: the full name equals the entry or ends with "." + entry ("*" stands for any index).</summary>
        public bool Matches(string entry)
        {
            var segments = entry.Split('.');
            foreach (var path in _paths)
            {
                if (path.Length < segments.Length) continue;
                bool all = true;
                for (int i = 0; i < segments.Length && all; i++)
                {
                    string have = path[path.Length - segments.Length + i];
                    all = have == "*" ? IsIndex(segments[i]) : have == segments[i];
                }
                if (all) return true;
            }
            return false;
        }

        private static bool IsIndex(string segment) => segment.Length > 0 && segment.All(c => c >= '0' && c <= '9');

        /// <summary>" Did you mean 'x'?" for the closest last-segment names, or "".</summary>
        public string Suggest(string entry)
        {
            string last = entry.Substring(entry.LastIndexOf('.') + 1);
            return NameSuggestions.DidYouMean(last, _names.Where(n => n != "*"));
        }

    }
}
