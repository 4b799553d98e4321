using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using System.Threading;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Microsoft.CodeAnalysis.Diagnostics;
using Peft.Analyzers.Diagnostics;
using Peft.Generators.Model;
using Peft.Generators.Parsing;

namespace Peft.Analyzers;

/// <summary>
/// Reports every PEFT diagnostic of declarations (PEFT0001 to PEFT0017, the methods' own, PEFT0051 and PEFT0052) for classes that carry a Peft attribute. It parses each such class
/// with the generator's own <see cref="PeftParser"/>, validates the model with <see cref="PeftModelValidator"/>, and maps
/// each problem to the attribute argument, attribute, member or class it is about, so <c>#pragma warning disable</c> and
/// .editorconfig severities apply as usual.
/// </summary>
[DiagnosticAnalyzer(LanguageNames.CSharp)]
public sealed class PeftAttributeAnalyzer : DiagnosticAnalyzer
{
    /// <inheritdoc />
    public override ImmutableArray<DiagnosticDescriptor> SupportedDiagnostics => DiagnosticDescriptors.All;

    /// <inheritdoc />
    public override void Initialize(AnalysisContext context)
    {
        context.EnableConcurrentExecution();
        context.ConfigureGeneratedCodeAnalysis(GeneratedCodeAnalysisFlags.None);
        context.RegisterCompilationStartAction(OnCompilationStart);
    }

    private static void OnCompilationStart(CompilationStartAnalysisContext context)
    {
        // MSBuild options are read once per compilation: the budget, and where the docs pages are (help links).
        var descriptors = DiagnosticDescriptors.WithDocs(context.Options);
        context.Options.AnalyzerConfigOptionsProvider.GlobalOptions.TryGetValue(PeftMSBuildOptions.MaxTrainableParametersKey, out string? rawBudget);
        long? budget = null;
        switch (PeftMSBuildOptions.ParseNonNegativeInteger(rawBudget, out long parsed))
        {
            case PeftMSBuildOptions.Status.Valid:
                budget = parsed;
                break;
            case PeftMSBuildOptions.Status.Invalid:
                string value = rawBudget ?? string.Empty;
                context.RegisterCompilationEndAction(end => end.ReportDiagnostic(Diagnostic.Create(
                    descriptors[PeftDiagnosticIds.InvalidMSBuildProperty],
                    Location.None,
                    PeftMSBuildOptions.MaxTrainableParameters,
                    value,
                    PeftMSBuildOptions.NonNegativeIntegerForm)));
                break;
        }

        var attributeTypes = KnownNames.AllAttributes
            .Select(name => context.Compilation.GetTypeByMetadataName(name))
            .Where(t => t is not null)
            .Select(t => t!)
            .ToImmutableArray();
        if (attributeTypes.IsEmpty) return; // Peft.Runtime is not referenced.

        var fuseAttribute = context.Compilation.GetTypeByMetadataName(KnownNames.FuseProjectionsAttribute);
        context.RegisterSymbolAction(c => AnalyzeType(c, attributeTypes, fuseAttribute, budget, descriptors), SymbolKind.NamedType);
    }

    private static void AnalyzeType(
        SymbolAnalysisContext context, ImmutableArray<INamedTypeSymbol> attributeTypes, INamedTypeSymbol? fuseAttribute, long? budget, DescriptorSet descriptors)
    {
        if (context.Symbol is not INamedTypeSymbol { TypeKind: TypeKind.Class } type) return;
        if (!HasPeftAttribute(type, attributeTypes))
        {
            ReportFuseWithoutPeftClass(context, type, fuseAttribute, descriptors);
            return;
        }

        var cancellationToken = context.CancellationToken;
        var model = PeftParser.Parse(type, context.Compilation, cancellationToken);
        if (model is null) return;

        var classLocation = ClassLocation(type);
        var locator = new ProblemLocator(type, classLocation, cancellationToken);
        foreach (var problem in PeftModelValidator.Validate(model, budget))
        {
            var descriptor = descriptors.ById(problem.Id);
            if (descriptor is null) continue;
            var args = problem.MessageArgs.Select(a => (object?)a).ToArray();
            context.ReportDiagnostic(Diagnostic.Create(descriptor, locator.Locate(problem), args));
        }

        if (model.IsModule && model.IsPartial && model.Members.Any(m => m.Adapters.Count > 0))
        {
            var lacking = InitializeCallScanner.ConstructorsLackingCall(type, cancellationToken);
            if (lacking.Count > 0)
            {
                string constructors = string.Join(", ", lacking.Select(c => ConstructorDisplay(type, c.Symbol)));
                context.ReportDiagnostic(Diagnostic.Create(
                    descriptors[PeftDiagnosticIds.MissingInitializeCall],
                    classLocation,
                    lacking.Select(c => c.Syntax.Identifier.GetLocation()),
                    PeftModelValidator.ClassDisplayName(model),
                    constructors));
            }
        }
    }

    /// <summary>
    /// PEFT0052 on each <c>[FuseProjections]</c> of a class that carries no other Peft attribute: nothing is generated for it,
    /// so the declared group would be silently ignored.
    /// </summary>
    private static void ReportFuseWithoutPeftClass(SymbolAnalysisContext context, INamedTypeSymbol type, INamedTypeSymbol? fuseAttribute, DescriptorSet descriptors)
    {
        if (fuseAttribute is null) return;
        foreach (var member in type.GetMembers())
        {
            if (member is not (IFieldSymbol or IPropertySymbol)) continue;
            foreach (var attribute in member.GetAttributes())
            {
                if (!SymbolEqualityComparer.Default.Equals(attribute.AttributeClass, fuseAttribute)) continue;
                string group = attribute.ConstructorArguments.Length == 1 && attribute.ConstructorArguments[0].Value is string g ? g : string.Empty;
                var location = attribute.ApplicationSyntaxReference?.GetSyntax(context.CancellationToken).GetLocation() ?? member.Locations.FirstOrDefault() ?? Location.None;
                context.ReportDiagnostic(Diagnostic.Create(
                    descriptors[PeftDiagnosticIds.SiblingGroupCannotApply],
                    location,
                    group,
                    member.Name,
                    "the class '" + type.Name + "' declares no adapter and is not [Adaptable], so no code is generated for it and nothing lists the group; "
                    + "put an adapter attribute (such as [LoRA]) on its projections or [Adaptable] on the class, or remove [FuseProjections]"));
            }
        }
    }

    /// <summary>The cheap test first: does the class or one of its fields or properties carry one of our attributes?</summary>
    private static bool HasPeftAttribute(INamedTypeSymbol type, ImmutableArray<INamedTypeSymbol> attributeTypes)
    {
        if (HasAny(type.GetAttributes(), attributeTypes)) return true;
        foreach (var member in type.GetMembers())
        {
            if (member is IFieldSymbol or IPropertySymbol && HasAny(member.GetAttributes(), attributeTypes)) return true;
        }
        return false;
    }

    private static bool HasAny(ImmutableArray<AttributeData> attributes, ImmutableArray<INamedTypeSymbol> attributeTypes)
    {
        foreach (var attribute in attributes)
        {
            foreach (var known in attributeTypes)
            {
                if (SymbolEqualityComparer.Default.Equals(attribute.AttributeClass, known)) return true;
            }
        }
        return false;
    }

    /// <summary>The class identifier in a hand-written declaration (not a generated partial), else the first one.</summary>
    private static Location ClassLocation(INamedTypeSymbol type)
    {
        foreach (var location in type.Locations)
        {
            string path = location.SourceTree?.FilePath ?? string.Empty;
            if (location.IsInSource && !path.EndsWith(".g.cs", StringComparison.OrdinalIgnoreCase)) return location;
        }
        return type.Locations.FirstOrDefault() ?? Location.None;
    }

    private static string ConstructorDisplay(INamedTypeSymbol type, IMethodSymbol constructor)
        => type.Name + "(" + string.Join(", ", constructor.Parameters.Select(p => p.Type.ToDisplayString(SymbolDisplayFormat.MinimallyQualifiedFormat))) + ")";

    /// <summary>Maps a <see cref="PeftProblem"/> back to the syntax it is about.</summary>
    private sealed class ProblemLocator
    {
        private readonly INamedTypeSymbol _type;
        private readonly Location _classLocation;
        private readonly CancellationToken _cancellationToken;
        private List<SiblingProjectionParser.FoundCall>? _forwardCalls;

        public ProblemLocator(INamedTypeSymbol type, Location classLocation, CancellationToken cancellationToken)
        {
            _type = type;
            _classLocation = classLocation;
            _cancellationToken = cancellationToken;
        }

        public Location Locate(PeftProblem problem)
        {
            if (problem.Target == PeftProblemTarget.Class || problem.MemberName is null) return _classLocation;
            if (problem.Target == PeftProblemTarget.ForwardCall)
            {
                // The same walk that numbered the calls in the model.
                _forwardCalls ??= SiblingProjectionParser.FindForwardCalls(_type, _cancellationToken);
                if (problem.AdapterIndex >= 0 && problem.AdapterIndex < _forwardCalls.Count) return _forwardCalls[problem.AdapterIndex].Syntax.GetLocation();
            }
            var member = FindMember(problem.MemberName);
            if (member is null) return _classLocation;
            var memberLocation = member.Locations.FirstOrDefault() ?? _classLocation;

            switch (problem.Target)
            {
                case PeftProblemTarget.Member:
                case PeftProblemTarget.ForwardCall:
                    return memberLocation;
                case PeftProblemTarget.FuseAttribute:
                    var fuse = member.GetAttributes().FirstOrDefault(a => PeftParser.Is(a, KnownNames.FuseProjectionsAttribute));
                    return fuse?.ApplicationSyntaxReference?.GetSyntax(_cancellationToken).GetLocation() ?? memberLocation;
                case PeftProblemTarget.MemberType:
                    return MemberTypeLocation(member) ?? memberLocation;
                default:
                    var attribute = AdapterAttribute(member, problem.AdapterIndex);
                    if (attribute?.ApplicationSyntaxReference?.GetSyntax(_cancellationToken) is not AttributeSyntax syntax) return memberLocation;
                    if (problem.Target == PeftProblemTarget.AttributeArgument && problem.ArgumentName is { } argumentName)
                    {
                        var argument = FindArgument(syntax, attribute, argumentName);
                        if (argument is not null) return argument.GetLocation();
                    }
                    return syntax.GetLocation();
            }
        }

        private ISymbol? FindMember(string name)
        {
            foreach (var member in _type.GetMembers(name))
            {
                if (member.IsStatic || member.IsImplicitlyDeclared) continue;
                if (member is IFieldSymbol { AssociatedSymbol: null } or IPropertySymbol { IsIndexer: false }) return member;
            }
            return null;
        }

        private Location? MemberTypeLocation(ISymbol member)
        {
            foreach (var reference in member.DeclaringSyntaxReferences)
            {
                var syntax = reference.GetSyntax(_cancellationToken);
                TypeSyntax? type = syntax switch
                {
                    VariableDeclaratorSyntax { Parent: VariableDeclarationSyntax declaration } => declaration.Type,
                    PropertyDeclarationSyntax property => property.Type,
                    _ => null,
                };
                if (type is not null) return type.GetLocation();
            }
            return null;
        }

        /// <summary>The adapter attribute number <paramref name="index"/>, counted the way the parser counts them.</summary>
        private static AttributeData? AdapterAttribute(ISymbol member, int index)
        {
            int i = 0;
            foreach (var attribute in member.GetAttributes())
            {
                if (PeftParser.ParseAdapter(attribute) is null) continue;
                if (i == index) return attribute;
                i++;
            }
            return null;
        }

        /// <summary>The written argument for a constructor parameter or named property; null when it takes its default.</summary>
        private static AttributeArgumentSyntax? FindArgument(AttributeSyntax syntax, AttributeData attribute, string name)
        {
            if (syntax.ArgumentList is null) return null;
            var arguments = syntax.ArgumentList.Arguments;
            foreach (var argument in arguments)
            {
                if (argument.NameEquals?.Name.Identifier.ValueText == name) return argument;
                if (argument.NameColon?.Name.Identifier.ValueText == name) return argument;
            }

            var parameters = attribute.AttributeConstructor?.Parameters ?? ImmutableArray<IParameterSymbol>.Empty;
            int ordinal = -1;
            for (int p = 0; p < parameters.Length; p++)
            {
                if (parameters[p].Name == name) ordinal = p;
            }
            if (ordinal < 0) return null;

            int position = 0;
            foreach (var argument in arguments)
            {
                if (argument.NameEquals is not null) continue;
                if (argument.NameColon is null && position == ordinal) return argument;
                position++;
            }
            return null;
        }
    }
}
