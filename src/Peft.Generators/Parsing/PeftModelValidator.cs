using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Globalization;
using System.Linq;
using Peft.Generators.Model;

namespace Peft.Generators.Parsing;

/// <summary>
/// Checks a parsed <see cref="PeftClassModel"/>. The generator emits code only for models that pass
/// <see cref="CanEmit"/>; the analyzers report every problem with a diagnostic ID (PEFT0001 and up).
/// </summary>
internal static partial class PeftModelValidator
{
    /// <summary>
    /// True when generated code for the model would compile and run: the class is a partial module, and
    /// every adapted member can be replaced by a wrapper layer. Value problems (a bad rank, an over-budget
    /// declaration) are left to the analyzers, which report them as errors in the same build.
    /// </summary>
    public static bool CanEmit(PeftClassModel model)
    {
        if (!model.IsPartial || !model.IsModule) return false;
        foreach (var member in model.Members)
        {
            if (member.Adapters.Count == 0) continue;
            if (member.IsReadOnly || !member.AcceptsWrapper) return false;
            if (member.Adapters.Select(a => a.Method == PeftMethodKind.PromptTune).Distinct().Count() > 1) return false;
        }
        return true;
    }

    /// <summary>
    /// Every problem in <paramref name="model"/> the compiler can see, in a stable order (class problems, then members in
    /// declaration order). Missing <c>InitializePeft()</c> calls (PEFT0013) need the constructor bodies and are found by
    /// the analyzer; an unparsable MSBuild property (PEFT0011) is a compilation-wide problem.
    /// </summary>
    /// <param name="model">The parsed class.</param>
    /// <param name="maxTrainableParameters">The PeftMaxTrainableParameters budget, or null when none is set.</param>
    public static ImmutableArray<PeftProblem> Validate(PeftClassModel model, long? maxTrainableParameters)
    {
        var problems = ImmutableArray.CreateBuilder<PeftProblem>();
        string className = ClassDisplayName(model);

        if (!model.IsModule)
        {
            problems.Add(ClassProblem(PeftDiagnosticIds.NotAModule, className));
        }
        if (!model.IsPartial)
        {
            problems.Add(ClassProblem(PeftDiagnosticIds.NotPartial, className));
        }

        // First use of each adapter name in the class: (method, member), for PEFT0016.
        var firstUse = new Dictionary<string, (PeftMethodKind Method, string Member)>(StringComparer.Ordinal);

        foreach (var member in model.Members)
        {
            if (member.Adapters.Count == 0) continue;
            var adapters = member.Adapters;

            if (!member.AcceptsWrapper)
            {
                problems.Add(new PeftProblem(
                    PeftDiagnosticIds.WrongMemberType, PeftProblemTarget.MemberType, member.Name, 0, null,
                    Args(AttributeName(adapters[0].Method), member.Name,
                        "a member of type Module<Tensor, Tensor> that can hold the adapter wrapper",
                        "it is declared as '" + DisplayTypeName(member.TypeName) + "'")));
            }

            if (member.IsReadOnly)
            {
                problems.Add(new PeftProblem(
                    PeftDiagnosticIds.ReadOnlyMember, PeftProblemTarget.Member, member.Name, -1, null,
                    Args(member.Name, member.IsProperty ? "a property without a setter" : "a readonly field")));
            }

            bool hasLinearMethod = adapters.Any(a => a.Method != PeftMethodKind.PromptTune);
            var namesOnMember = new HashSet<string>(StringComparer.Ordinal);

            for (int i = 0; i < adapters.Count; i++)
            {
                var adapter = adapters[i];
                string attribute = AttributeName(adapter.Method);

                ValidateValues(problems, member, adapter, i, attribute);
                ValidateLayer(problems, member, adapter, i, attribute, hasLinearMethod, adapters);

                if (member.Frozen || model.FrozenClass)
                {
                    problems.Add(new PeftProblem(
                        PeftDiagnosticIds.AdapterOnFrozen, PeftProblemTarget.Attribute, member.Name, i, null,
                        Args(attribute, member.Name, member.Frozen
                            ? "the member is marked [Freeze]"
                            : "class '" + className + "' is marked [Freeze]")));
                }

                if (!namesOnMember.Add(adapter.AdapterName))
                {
                    problems.Add(new PeftProblem(
                        PeftDiagnosticIds.DuplicateAdapterName, PeftProblemTarget.AttributeArgument, member.Name, i, "Name",
                        Args(member.Name, adapter.AdapterName)));
                }
                else if (firstUse.TryGetValue(adapter.AdapterName, out var first))
                {
                    if (first.Method != adapter.Method)
                    {
                        problems.Add(new PeftProblem(
                            PeftDiagnosticIds.AdapterNameMethodConflict, PeftProblemTarget.AttributeArgument, member.Name, i, "Name",
                            Args(adapter.AdapterName, attribute, AttributeName(first.Method), first.Member)));
                    }
                }
                else
                {
                    firstUse.Add(adapter.AdapterName, (adapter.Method, member.Name));
                }
            }
        }

        ValidateAdaptable(problems, model, className);

        if (maxTrainableParameters is long budget)
        {
            var count = CountTrainableParameters(model);
            if (count.Counted > budget)
            {
                problems.Add(ClassProblem(PeftDiagnosticIds.OverBudget,
                    className, FormatCount(count.Counted), FormatCount(budget),
                    count.UncountedAdapters.ToString(CultureInfo.InvariantCulture)));
            }
        }

        return problems.ToImmutable();
    }

    private static void ValidateValues(ImmutableArray<PeftProblem>.Builder problems, MemberModel member, AdapterModel adapter, int index, string attribute)
    {
        if (adapter.Method == PeftMethodKind.PromptTune)
        {
            if (adapter.VirtualTokens <= 0)
            {
                problems.Add(ArgumentProblem(PeftDiagnosticIds.VirtualTokensNotPositive, member, index, "virtualTokens",
                    adapter.VirtualTokens.ToString(CultureInfo.InvariantCulture)));
            }
            return;
        }

        if (adapter.Rank <= 0)
        {
            problems.Add(ArgumentProblem(PeftDiagnosticIds.RankNotPositive, member, index, "rank",
                attribute, adapter.Rank.ToString(CultureInfo.InvariantCulture)));
        }
        if (!(adapter.Alpha > 0) || double.IsInfinity(adapter.Alpha))
        {
            problems.Add(ArgumentProblem(PeftDiagnosticIds.AlphaNotPositive, member, index, "alpha",
                attribute, FormatValue(adapter.Alpha)));
        }
        if (adapter.Method == PeftMethodKind.LoRA && !(adapter.Dropout >= 0 && adapter.Dropout < 1))
        {
            problems.Add(ArgumentProblem(PeftDiagnosticIds.DropoutOutOfRange, member, index, "dropout",
                FormatValue(adapter.Dropout)));
        }
    }

    private static void ValidateLayer(
        ImmutableArray<PeftProblem>.Builder problems, MemberModel member, AdapterModel adapter, int index, string attribute,
        bool hasLinearMethod, EquatableArray<AdapterModel> adapters)
    {
        var layer = member.Layer;
        bool needsLinear = adapter.Method != PeftMethodKind.PromptTune;
        LayerKind needed = needsLinear ? LayerKind.Linear : LayerKind.Embedding;
        string neededText = needsLinear ? "a Linear layer" : "an Embedding layer";

        if (layer is not null && layer.Kind != needed)
        {
            string found = layer.Kind switch
            {
                LayerKind.Linear => "it is built with Linear(...)",
                LayerKind.Embedding => "it is built with Embedding(...)",
                _ => "it is built with a TorchSharp layer other than Linear or Embedding",
            };
            problems.Add(new PeftProblem(PeftDiagnosticIds.WrongMemberType, PeftProblemTarget.Attribute, member.Name, index, null,
                Args(attribute, member.Name, neededText, found)));
            return;
        }

        if (layer is null && !needsLinear && hasLinearMethod)
        {
            // The layer is not visible to the compiler, but one member cannot be both a Linear and an Embedding.
            var other = adapters.First(a => a.Method != PeftMethodKind.PromptTune);
            problems.Add(new PeftProblem(PeftDiagnosticIds.WrongMemberType, PeftProblemTarget.Attribute, member.Name, index, null,
                Args(attribute, member.Name, neededText,
                    "the member also has [" + AttributeName(other.Method) + "], which needs a Linear layer")));
            return;
        }

        // Here the layer is a Linear or not visible to the compiler.
        long? inSize = layer?.InFeatures, outSize = layer?.OutFeatures;

        if (adapter.Method == PeftMethodKind.LoRA
            && adapter.Rank > 0
            && inSize is long inFeatures
            && outSize is long outFeatures
            && adapter.Rank > Math.Min(inFeatures, outFeatures))
        {
            problems.Add(ArgumentProblem(PeftDiagnosticIds.RankExceedsLayer, member, index, "rank",
                adapter.Rank.ToString(CultureInfo.InvariantCulture), member.Name,
                inFeatures.ToString(CultureInfo.InvariantCulture), outFeatures.ToString(CultureInfo.InvariantCulture)));
        }

        // Factor -1 (or any negative value) is PEFT's automatic factorization; 0 divides nothing.
        if (adapter.Method == PeftMethodKind.Kronecker && adapter.Factor >= 0)
        {
            bool divides = adapter.Factor > 0
                && (inSize is not long i || i % adapter.Factor == 0)
                && (outSize is not long o || o % adapter.Factor == 0);
            if (!divides)
            {
                problems.Add(ArgumentProblem(PeftDiagnosticIds.FactorDoesNotDivide, member, index, "Factor",
                    adapter.Factor.ToString(CultureInfo.InvariantCulture), member.Name,
                    FormatSize(inSize), FormatSize(outSize)));
            }
        }
    }

    /// <summary>The trainable parameters of one class that the compiler can count.</summary>
    /// <param name="Counted">Parameters of the adapters and [Trainable] layers whose sizes are compile-time constants.</param>
    /// <param name="UncountedAdapters">Trainable adapters and [Trainable] members left out because their layer or its sizes are unknown.</param>
    internal readonly record struct TrainableParameterCount(long Counted, int UncountedAdapters);

    /// <summary>
    /// Counts the trainable adapter parameters of <paramref name="model"/>: every adapter that is not frozen (by [Freeze] on
    /// the member or the class) and whose layer sizes are compile-time constants. Adapters that are errors of their own (a
    /// rank or virtual token count that is not positive, Factor 0, the wrong layer kind) are left out of both numbers.
    /// A fully trainable [Trainable] member counts every parameter of its layer: <c>Linear(in, out)</c> is
    /// <c>in·out</c> plus <c>out</c> with a bias, <c>Embedding(n, d)</c> is <c>n·d</c>; any other [Trainable] member is uncounted.
    /// </summary>
    public static TrainableParameterCount CountTrainableParameters(PeftClassModel model)
    {
        long counted = 0;
        int uncounted = 0;
        if (model.FrozenClass) return new TrainableParameterCount(0, 0);
        foreach (var member in model.Members)
        {
            if (member.Frozen) continue;
            if (member.Trainable)
            {
                long? whole = CountLayerParameters(member.Layer);
                if (whole is long w) counted = SaturatingAdd(counted, w);
                else uncounted++;
            }
            foreach (var adapter in member.Adapters)
            {
                // An adapter that is an error of its own (a bad rank, the wrong layer) is neither counted nor "unknown".
                if (IsInvalidForCounting(adapter, member.Layer)) continue;
                long? count = CountAdapterParameters(adapter, member.Layer);
                if (count is long c) counted = SaturatingAdd(counted, c);
                else uncounted++;
            }
        }
        return new TrainableParameterCount(counted, uncounted);
    }

    /// <summary>Every parameter of a layer the compiler can see: <c>Linear(in, out)</c> is <c>in·out</c> (+ <c>out</c> with a
    /// bias), <c>Embedding(n, d)</c> is <c>n·d</c>; null when the layer, a size or the bias flag is unknown.</summary>
    public static long? CountLayerParameters(LayerInfo? layer)
    {
        if (layer is not { InFeatures: long a, OutFeatures: long b } || a <= 0 || b <= 0) return null;
        return layer.Kind switch
        {
            LayerKind.Linear when layer.HasBias is bool bias => SaturatingAdd(SaturatingMultiply(a, b), bias ? b : 0),
            LayerKind.Embedding => SaturatingMultiply(a, b),
            _ => null,
        };
    }

    private static long SaturatingMultiply(long a, long b) => a > long.MaxValue / b ? long.MaxValue : a * b;

    private static bool IsInvalidForCounting(AdapterModel adapter, LayerInfo? layer)
    {
        bool isPrompt = adapter.Method == PeftMethodKind.PromptTune;
        if (isPrompt ? adapter.VirtualTokens <= 0 : adapter.Rank <= 0) return true;
        if (adapter.Method == PeftMethodKind.Kronecker && adapter.Factor == 0) return true;
        return layer is not null && layer.Kind != (isPrompt ? LayerKind.Embedding : LayerKind.Linear);
    }

    /// <summary>
    /// The trainable parameters one adapter adds to <paramref name="layer"/>, or null when the layer, its sizes, or the
    /// adapter's own size are not known (or not valid) at compile time.
    /// </summary>
    public static long? CountAdapterParameters(AdapterModel adapter, LayerInfo? layer)
    {
        if (layer is null || layer.InFeatures is not long first || layer.OutFeatures is not long second) return null;
        if (first <= 0 || second <= 0) return null;
        switch (adapter.Method)
        {
            case PeftMethodKind.LoRA when layer.Kind == LayerKind.Linear && adapter.Rank > 0:
                return LoRAParameterCount(first, second, adapter.Rank);
            case PeftMethodKind.Kronecker when layer.Kind == LayerKind.Linear && adapter.Rank > 0 && adapter.Factor != 0:
                return KroneckerParameterCount(first, second, adapter.Rank, adapter.Factor, adapter.DecomposeBoth);
            case PeftMethodKind.PromptTune when layer.Kind == LayerKind.Embedding && adapter.VirtualTokens > 0:
                return PromptTuningParameterCount(adapter.VirtualTokens, second);
            default:
                return null;
        }
    }

    /// <summary>LoRA on Linear(in, out): A is [r, in], B is [out, r], so r · (in + out) parameters.</summary>
    public static long LoRAParameterCount(long inFeatures, long outFeatures, int rank) => rank * (inFeatures + outFeatures);

    /// <summary>Prompt tuning: one [virtualTokens, dim] embedding.</summary>
    public static long PromptTuningParameterCount(int virtualTokens, long embeddingDim) => virtualTokens * embeddingDim;

    /// <summary>
    /// LoKr on Linear(in, out), as PEFT's <c>LoKrLayer.update_layer</c>: <c>(in_m, in_n) = F(in)</c>,
    /// <c>(out_l, out_k) = F(out)</c>; W1 is a full [out_l, in_m] matrix unless <paramref name="decomposeBoth"/> and
    /// r &lt; max(out_l, in_m) / 2 (then w1_a [out_l, r] and w1_b [r, in_m]); W2 is a full [out_k, in_n] matrix unless
    /// r &lt; max(out_k, in_n) / 2 (then w2_a [out_k, r] and w2_b [r, in_n]).
    /// </summary>
    public static long KroneckerParameterCount(long inFeatures, long outFeatures, int rank, int factor, bool decomposeBoth)
    {
        var (inM, inN) = Factorization(inFeatures, factor);
        var (outL, outK) = Factorization(outFeatures, factor);
        // r < max / 2 in PEFT's float arithmetic is 2r < max for integers.
        long w1 = decomposeBoth && 2L * rank < Math.Max(outL, inM) ? rank * (outL + inM) : outL * inM;
        long w2 = 2L * rank < Math.Max(outK, inN) ? rank * (outK + inN) : outK * inN;
        return w1 + w2;
    }

    /// <summary>
    /// PEFT's LoKr <c>factorization(dimension, factor)</c>: splits <paramref name="dimension"/> into two factors,
    /// smaller first. A positive <paramref name="factor"/> that divides the dimension is used as is; otherwise the factors
    /// are searched upward from (1, dimension), taking each next divisor m while m + dimension / m does not exceed
    /// dimension + 1 and m does not exceed <paramref name="factor"/> (the dimension itself when factor is negative).
    /// </summary>
    /// <example>128 → (8, 16); 768 → (24, 32); 64 → (8, 8); 7 → (1, 7); 64 with factor 4 → (4, 16).</example>
    public static (long Small, long Large) Factorization(long dimension, int factor = -1)
    {
        if (dimension <= 0) throw new ArgumentOutOfRangeException(nameof(dimension), dimension, "The dimension must be positive.");
        if (factor > 0 && dimension % factor == 0)
        {
            long first = factor, second = dimension / factor;
            return first <= second ? (first, second) : (second, first);
        }

        long limit = factor < 0 ? dimension : factor;
        long m = 1, n = dimension;
        long length = m + n;
        while (m < n)
        {
            long newM = m + 1;
            while (dimension % newM != 0) newM++;
            long newN = dimension / newM;
            if (newM + newN > length || newM > limit) break;
            m = newM;
            n = newN;
        }
        return m <= n ? (m, n) : (n, m);
    }

    /// <summary>"Attention" or "Outer.Inner&lt;T&gt;": how the class is named in messages.</summary>
    public static string ClassDisplayName(PeftClassModel model)
        => string.Join(".", model.Hierarchy.Types.Select(t => t.Name + t.TypeParameterList));

    /// <summary>The attribute as users write it: LoRA, Kronecker or PromptTune.</summary>
    public static string AttributeName(PeftMethodKind method) => method switch
    {
        PeftMethodKind.LoRA => "LoRA",
        PeftMethodKind.Kronecker => "Kronecker",
        _ => "PromptTune",
    };

    /// <summary>Formats a parameter count for messages: invariant culture with thousands separators (1,234,567).</summary>
    public static string FormatCount(long value) => value.ToString("N0", CultureInfo.InvariantCulture);

    private static string FormatValue(double value) => value.ToString("R", CultureInfo.InvariantCulture);

    private static string FormatSize(long? size) => size is long s ? s.ToString(CultureInfo.InvariantCulture) : "?";

    private static string DisplayTypeName(string fullyQualified) => fullyQualified.Replace("global::", string.Empty);

    private static long SaturatingAdd(long a, long b) => a > long.MaxValue - b ? long.MaxValue : a + b;

    private static EquatableArray<string> Args(params string[] args) => new(args);

    private static PeftProblem ClassProblem(string id, params string[] args)
        => new(id, PeftProblemTarget.Class, null, -1, null, Args(args));

    private static PeftProblem ArgumentProblem(string id, MemberModel member, int index, string argument, params string[] args)
        => new(id, PeftProblemTarget.AttributeArgument, member.Name, index, argument, Args(args));
}
