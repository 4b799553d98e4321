using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// A model's transformer stack as methods that act around layers see it: the modules that compute the first block's input
/// from the token ids (<see cref="EmbeddingModules"/>) and the ordered blocks (<see cref="Blocks"/>). Every family in
/// <c>Peft.Models</c> implements it (Llama's <c>LlamaModel</c>, GPT-2's <c>Gpt2Model</c>, BERT's <c>BertModel</c>, USE-lite's
/// <c>UseLiteEncoder</c>), and a user's own model can too; a method that freezes blocks (<see cref="LayerFreezing"/>) finds
/// the stack through this contract and never knows the family (docs/ARCHITECTURE.md, "Transformer stacks").
/// </summary>
/// <remarks>
/// <para>Implementing it is two properties and one line in the forward: run the embedding modules and the first
/// <see cref="TransformerStacks.GradientFreeBlocks"/> blocks under <c>no_grad</c> (see <see cref="TransformerStacks.NoGradPrefix"/>),
/// so that a frozen bottom of the stack stores no activations for the backward.</para>
/// <para><see cref="EmbeddingModules"/> must hold every module with parameters that the first block's input depends on (token,
/// position and segment embeddings, an embedding norm; an adapted embedding carries its prompt there), because the
/// gradient-free prefix is only taken when none of them trains.</para>
/// <para>The contract grows with the methods that need more of a block, as per-block interfaces that the modules in
/// <see cref="Blocks"/> implement, found through the same list: insertion after a block's attention or feed-forward sub-layer
/// (<see cref="ITransformerBlock"/>, bottleneck adapters) exists, and so do the points inside its attention (<see cref="AttentionInsertions"/>: key/value prefixes, head adjustments).</para>
/// <para>The forward runs its blocks through <see cref="StackRunners.RunBlocks"/>, so a method that changes how the blocks
/// run together (MEFT's reversible stack, an <see cref="IStackRunner"/>) can take the loop over.</para>
/// </remarks>
public interface ITransformerStack
{
    /// <summary>The modules that compute the first block's input (in the order they run); empty when the stack takes
    /// embedded inputs.</summary>
    IReadOnlyList<nn.Module> EmbeddingModules { get; }

    /// <summary>The blocks, bottom (nearest the input) first.</summary>
    IReadOnlyList<nn.Module> Blocks { get; }
}

/// <summary>What every <see cref="ITransformerStack"/> shares: finding the stack in a model, and the gradient-free prefix its
/// forward runs under <c>no_grad</c>.</summary>
public static class TransformerStacks
{
    /// <summary>Whether stacks run their gradient-free prefix under <c>no_grad</c> (true by default). Turning it off changes no
    /// output and no gradient, only the memory and time the frozen bottom costs: for measurements and tests.</summary>
    public static bool GradientFreePrefix { get; set; } = true;

    /// <summary>
    /// How many blocks at the bottom of the stack the forward may run without recording the autograd graph: 0 unless
    /// gradients are enabled and no parameter of <see cref="ITransformerStack.EmbeddingModules"/> requires a gradient; then
    /// the number of leading blocks none of whose parameters (adapters included) requires one. Nothing below them trains, so
    /// running them under <c>no_grad</c> changes no gradient and saves their activations (Telly's frozen bottom layers).
    /// Decided on every forward from <c>requires_grad</c>, so it can never drop a gradient that something asks for; 0 while
    /// <see cref="GradientFreePrefix"/> is off.
    /// </summary>
    /// <param name="stack">The stack.</param>
    /// <returns>The number of blocks, from 0 to the block count.</returns>
    public static int GradientFreeBlocks(this ITransformerStack stack)
    {
        ArgumentNullException.ThrowIfNull(stack);
        if (!GradientFreePrefix || !torch.is_grad_enabled() || stack.EmbeddingModules.Any(Trains))
        {
            return 0;
        }

        int count = 0;
        foreach (var block in stack.Blocks)
        {
            if (Trains(block)) break;
            count++;
        }

        return count;
    }

    /// <summary>
    /// Key/value positions the first block's attention places before the sequence (prefix tuning; 0 without). A stack starts
    /// its tokens' positions after them, as Hugging Face models do for PEFT's past key/values: position ids, rotary tables and
    /// the position limit all count the prefix.
    /// </summary>
    /// <param name="stack">The stack.</param>
    /// <returns>The prefix length.</returns>
    public static long KeyValuePrefixLength(this ITransformerStack stack)
    {
        ArgumentNullException.ThrowIfNull(stack);
        return stack.Blocks.Count > 0 && stack.Blocks[0] is ITransformerBlock block ? block.Insertions.Attention?.PrefixLength ?? 0 : 0;
    }

    /// <summary>A <c>no_grad</c> scope while the forward is inside the gradient-free prefix, or null (nothing to dispose):
    /// with <c>k</c> from <see cref="GradientFreeBlocks"/>, <c>using (TransformerStacks.NoGradPrefix(k))</c> around the
    /// embedding modules and <c>using (TransformerStacks.NoGradPrefix(k - i))</c> around block <c>i</c>.</summary>
    /// <param name="gradientFreeBlocks">The gradient-free blocks left from here on (a scope when positive).</param>
    /// <returns>The scope, or null.</returns>
    public static IDisposable? NoGradPrefix(int gradientFreeBlocks) => gradientFreeBlocks > 0 ? torch.no_grad() : null;

    /// <summary>
    /// The transformer stack of <paramref name="model"/>: the model itself or the one registered module of its tree that
    /// implements <see cref="ITransformerStack"/>.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <returns>The stack's dotted path ("" for the model itself) and the stack.</returns>
    /// <exception cref="PeftConfigurationException">No module, or more than one, implements it; the message says how to add
    /// one.</exception>
    public static (string Path, ITransformerStack Stack) Find(nn.Module model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var stacks = ModuleTree.Walk(model).Where(n => n.Module is ITransformerStack).ToList();
        if (stacks.Count == 1)
        {
            return (stacks[0].Path, (ITransformerStack)stacks[0].Module);
        }

        throw stacks.Count == 0
            ? new PeftConfigurationException(
                $"{model.GetType().Name} has no transformer stack: no module of its tree implements ITransformerStack. The Peft.Models families do; a model of your own " +
                "implements it with its embedding modules and its ordered blocks (docs/ARCHITECTURE.md, \"Transformer stacks\").",
                null, null)
            : new PeftConfigurationException(
                $"{model.GetType().Name} has {stacks.Count} transformer stacks ({string.Join(", ", stacks.Select(s => s.Path.Length == 0 ? "(the model)" : s.Path))}); " +
                "apply the configuration to the one you mean (pass that module instead of the whole model).",
                null, null);
    }

    private static bool Trains(nn.Module module) => module.parameters().Any(p => p.requires_grad);
}
